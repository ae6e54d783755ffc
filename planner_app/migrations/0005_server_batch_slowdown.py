from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('planner_app', '0004_dispatch_token_revoked'),
    ]

    operations = [
        migrations.AddField(
            model_name='server',
            name='batch_slowdown',
            field=models.JSONField(blank=True, null=True),
        ),
    ]
