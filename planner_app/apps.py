from django.apps import AppConfig


class PlannerAppConfig(AppConfig):
    name = "planner_app"
    verbose_name = "chainplan planner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .probe import schema  # noqa: F401  (registers the OpenAPI auth extension)
        # re-planning: schedule <-> periodic task clean-up, re-plans on server edits, and the
        # runner of re-plan jobs registered with planning (planning does not import re-planning)
        from .replanning import signals  # noqa: F401
