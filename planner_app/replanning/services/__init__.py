"""Write paths of re-planning (README "Re-planning"), one module per job.

- ``replans``: re-plan requests (a manual one, or a trigger: servers, calibration, load, schedule), on the servers
  that are up (the liveness domain registers which are not);
- ``runner``: how planning computes a re-plan job (registered by ``PlannerAppConfig.ready``);
- ``adoption``: a plan becomes the cluster's, by a user or by a re-plan judged by ``..gain``;
- ``webhooks``: the adoption POSTed to the cluster's URL (with the check that it is a public address);
- ``observed_load``: the runtime's arrival rate, and a re-plan when it drifts;
- ``schedules``: re-planning schedules as django-celery-beat periodic tasks;
- ``ingest``: a cluster from a PETALS swarm's state or Parallax nodes, with the swarm's placement adopted.

Callers import the public names from here.
"""

from ..gain import replan_gain
from .adoption import adoption_create, plan_adopt, replan_decide
from .ingest import cluster_import_runtime
from .observed_load import observed_load_record
from .replans import (ReplanRefused, register_unavailable_servers, replan_request, replan_trigger, replan_workload,
                      unavailable_servers)
from .runner import REPLAN_RUNNER, replan_compute
from .schedules import REPLAN_SCHEDULED, replan_scheduled, schedule_delete, schedule_save
from .webhooks import NOTIFY_ADOPTION, adoption_notify, adoption_notify_enqueue, adoption_payload, webhook_target_error

__all__ = [
    "NOTIFY_ADOPTION", "REPLAN_RUNNER", "REPLAN_SCHEDULED", "ReplanRefused", "adoption_create", "adoption_notify",
    "adoption_notify_enqueue", "adoption_payload", "cluster_import_runtime", "observed_load_record", "plan_adopt",
    "register_unavailable_servers", "replan_compute", "replan_decide", "replan_gain", "replan_request",
    "replan_scheduled", "replan_trigger", "replan_workload", "schedule_delete", "schedule_save",
    "unavailable_servers", "webhook_target_error",
]
