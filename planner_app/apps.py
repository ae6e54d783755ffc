from django.apps import AppConfig


class PlannerAppConfig(AppConfig):
    name = "planner_app"
    verbose_name = "chainplan planner"
    default_auto_field = "django.db.models.BigAutoField"
