from django.contrib import admin

from .models import Cluster, Job, ModelSpec, Plan, ProbeToken, Server, ServerCalibration


class ServerInline(admin.TabularInline):
    model = Server
    extra = 0
    raw_id_fields = ["latest_calibration"]


@admin.register(Cluster)
class ClusterAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "owner", "model", "created_at"]
    list_filter = ["owner"]
    search_fields = ["name"]
    inlines = [ServerInline]


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
    list_display = ["id", "owner", "status", "cluster", "attempts", "worker", "created_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["id", "worker", "error"]
    readonly_fields = ["created_at", "enqueued_at", "started_at", "finished_at", "heartbeat_at"]
    raw_id_fields = ["cluster", "model"]
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
