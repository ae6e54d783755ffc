"""The app's models, gathered from the domains (the app label stays ``planner_app``).

Django loads this module for the app registry, and the migrations name
``planner_app.models._new_probe_key``; the models themselves live with their domain.
Domain code imports from its own or a lower domain's models module, never from here.
"""

from .catalog.models import Cluster, ModelSpec, Server, TimeStamped
from .planning.models import TERMINAL_STATUSES, Job, JobStatus, Plan, Trigger
from .replanning.models import PlanAdoption, ReplanSchedule
from .probe.models import ProbeToken, ServerCalibration, _new_probe_key
from .dispatch.models import DispatchObservation, DispatchToken
from .gateway.models import GatewayKey
from .liveness.models import ClusterLiveness, LivenessEvent, ServerLiveness

__all__ = ["TimeStamped", "ModelSpec", "Cluster", "Server", "ServerCalibration", "ProbeToken", "JobStatus",
           "TERMINAL_STATUSES", "Trigger", "Job", "Plan", "PlanAdoption", "ReplanSchedule", "_new_probe_key",
           "DispatchToken", "DispatchObservation", "GatewayKey", "ServerLiveness", "LivenessEvent",
           "ClusterLiveness"]
