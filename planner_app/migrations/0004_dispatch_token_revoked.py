from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('planner_app', '0003_dispatch'),
    ]

    operations = [
        migrations.AddField(
            model_name='dispatchtoken',
            name='revoked_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
