from django.contrib import admin

from .models import (Cluster, Job, LivenessEvent, ModelSpec, Plan, PlanAdoption, ProbeToken, ReplanSchedule, Server,
                     ServerCalibration, ServerLiveness)


class ServerInline(admin.TabularInline):
    model = Server
    extra = 0
    raw_id_fields = ["latest_calibration"]


class ReplanScheduleInline(admin.TabularInline):
    # the timing itself is edited on the periodic task (django-celery-beat's admin), linked here
    model = ReplanSchedule
    extra = 0
    raw_id_fields = ["periodic_task"]


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "model", "adopted_plan", "created_at"]
    list_filter = ["owner"]
    search_fields = ["name"]
    raw_id_fields = ["adopted_plan", "model"]
    readonly_fields = ["observed_arrival_rate", "observed_window_s", "observed_at"]
    inlines = [ServerInline, ReplanScheduleInline]


@admin.register(ReplanSchedule)
class ReplanScheduleAdmin(admin.ModelAdmin):
    list_display = ["id", "cluster", "periodic_task", "created_at"]
    raw_id_fields = ["cluster", "periodic_task"]


@admin.register(PlanAdoption)
class PlanAdoptionAdmin(admin.ModelAdmin):
    list_display = ["id", "cluster", "plan", "previous_plan", "adopted_by", "trigger", "gain", "webhook_status",
                    "created_at"]
    list_filter = ["trigger"]
    raw_id_fields = ["cluster", "plan", "previous_plan", "adopted_by"]


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = ["id", "server_id", "cluster", "memory_gb", "comm_time_s", "block_time_s"]
    search_fields = ["server_id", "cluster__name"]
    raw_id_fields = ["cluster", "latest_calibration"]


@admin.register(ModelSpec)
class ModelSpecAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "num_blocks", "block_size_gb", "cache_size_gb"]
    search_fields = ["name"]


class PlanInline(admin.TabularInline):
    model = Plan
    extra = 0
    fields = ["algorithm", "feasible", "mean_response_s", "total_capacity", "solve_time_s"]
    readonly_fields = fields
    can_delete = False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "owner", "status", "trigger", "cluster", "attempts", "worker", "created_at", "finished_at"]
    list_filter = ["status", "trigger"]
    search_fields = ["id", "worker", "error"]
    readonly_fields = ["created_at", "enqueued_at", "started_at", "finished_at", "heartbeat_at"]
    raw_id_fields = ["cluster", "model", "previous_plan"]
    inlines = [PlanInline]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "algorithm", "feasible", "mean_response_s", "total_capacity"]
    list_filter = ["algorithm", "feasible"]
    raw_id_fields = ["job"]


@admin.register(ServerCalibration)
class ServerCalibrationAdmin(admin.ModelAdmin):
    list_display = ["id", "server", "model_name", "created_at"]
    raw_id_fields = ["server"]


@admin.register(ProbeToken)
class ProbeTokenAdmin(admin.ModelAdmin):
    list_display = ["id", "server", "created_at"]
    raw_id_fields = ["server"]


@admin.register(ServerLiveness)
class ServerLivenessAdmin(admin.ModelAdmin):
    # the store decides states (docs/liveness.md): an edit here would not reach it, so this is for reading
    list_display = ["id", "server", "state", "since", "cause", "last_heartbeat_at", "drain_requested_at"]
    list_filter = ["state"]
    raw_id_fields = ["server"]


@admin.register(LivenessEvent)
class LivenessEventAdmin(admin.ModelAdmin):
    list_display = ["id", "cluster", "kind", "server", "prev", "state", "cause", "at", "replan_job"]
    list_filter = ["kind", "state"]
    search_fields = ["server", "cause"]
    raw_id_fields = ["cluster", "plan", "replan_job"]
