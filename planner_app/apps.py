from django.apps import AppConfig


class PlannerAppConfig(AppConfig):
    name = "planner_app"
    verbose_name = "chainplan planner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from . import signals  # noqa: F401  (schedule <-> periodic task clean-up)
