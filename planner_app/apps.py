from django.apps import AppConfig


class PlannerAppConfig(AppConfig):
    name = "planner_app"
    verbose_name = "chainplan planner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .core.fields import install_strict_types
        install_strict_types()
        from .probe import schema  # noqa: F401  (registers the OpenAPI auth extension)
        # re-planning: schedule <-> periodic task clean-up, re-plans on server edits, and the
        # runner of re-plan jobs registered with planning (planning does not import re-planning)
        from .replanning import signals  # noqa: F401
        # dispatch: an adoption (by a user or by re-planning) is pushed to the live dispatcher
        from .dispatch import signals as dispatch_signals  # noqa: F401,F811
