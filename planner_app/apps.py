from django.apps import AppConfig


class PlannerAppConfig(AppConfig):
    name = "planner_app"
    verbose_name = "chainplan planner"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from .core.fields import install_strict_types
        install_strict_types()
        from .probe import schema  # noqa: F401  (registers the OpenAPI auth extension)
        # re-planning computes and judges re-plan jobs; planning runs them through this runner
        # (planning does not import re-planning)
        from .planning.services import register_replan_runner
        from .replanning.services import REPLAN_RUNNER
        register_replan_runner(REPLAN_RUNNER)
        # re-planning: schedule <-> periodic task clean-up, and re-plans on server edits
        from .replanning import signals  # noqa: F401
        # dispatch: an adoption (by a user or by re-planning) is pushed to the live dispatcher
        from .dispatch import signals as dispatch_signals  # noqa: F401,F811
        # gateway: a key deleted with its cluster leaves the dispatcher's store
        from .gateway import signals as gateway_signals  # noqa: F401
        # liveness: every re-plan leaves out the servers that are not up (re-planning does not import liveness)
        from .liveness.selectors import unavailable_servers
        from .replanning.services import register_unavailable_servers
        register_unavailable_servers(unavailable_servers)
