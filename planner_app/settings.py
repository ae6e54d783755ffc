"""Settings, all driven by the environment.

With nothing set, the service runs on the embedded default: SQLite under
./var/ and a Celery broker on kombu's filesystem transport under ./var/broker,
so only Python is needed.  Production sets DATABASE_URL (PostgreSQL) and
REDIS_URL or CELERY_BROKER_URL (Redis).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("CHAINPLAN_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def _secret_key() -> str:
    key = os.environ.get("DJANGO_SECRET_KEY")
    if key:
        return key
    # Embedded default: a random key kept under var/ so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        path.write_text(key)
        path.chmod(0o600)
        return key


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
CSRF_FAILURE_VIEW = "planner_app.core.errors.csrf_failure"   # JSON, like every other API error

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",   # Swagger UI assets served locally (no CDN)
    "django_celery_beat",
    "planner_app",
]

MIDDLEWARE = [
    # First, so an oversized body is refused before anything reads it.
    "planner_app.core.middleware.RequestSizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "planner_app.core.middleware.JsonErrorMiddleware",
]

ROOT_URLCONF = "planner_app.urls"
WSGI_APPLICATION = "planner_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database ---------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'chainplan.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
                                              conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write concurrently: WAL plus immediate
    # transactions and a long busy timeout avoid "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    DATABASES["default"]["TEST"] = {"NAME": None}   # in-memory for tests

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 4}},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

# --- static files and the web UI ---------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "planner_app" / "static_build"    # filled by collectstatic
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
FRONTEND_DIST = Path(os.environ.get("CHAINPLAN_FRONTEND_DIST", BASE_DIR / "frontend" / "dist"))
# The built Vite app is served from "/" (assets under /assets/...).
WHITENOISE_ROOT = FRONTEND_DIST if FRONTEND_DIST.is_dir() else None
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- request limits ------------------------------------------------------------
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 10 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000
# the solvers plan J = 10,000 in seconds (bench/results/solver.md) and accept up to 20,000
MAX_SERVERS_PER_CLUSTER = env_int("MAX_SERVERS_PER_CLUSTER", 20_000)
MAX_ALGORITHMS_PER_JOB = 16
MAX_SIMULATE_REQUESTS = env_int("MAX_SIMULATE_REQUESTS", 2_000_000)
MAX_JOB_TIME_LIMIT_S = env_float("MAX_JOB_TIME_LIMIT_S", 600.0)

# --- REST framework --------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "planner_app.core.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["planner_app.core.parsers.SafeJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "planner_app.core.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_FILTER_BACKENDS": [
        "planner_app.core.filters.StrictFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "planner_app.core.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Password checks (auth/token, auth/login) per client address: guessing is slow, a 429 says when to retry.
    "DEFAULT_THROTTLE_RATES": {"login": os.environ.get("CHAINPLAN_LOGIN_RATE", "30/min")},
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "chainplan API",
    "DESCRIPTION": "Plan server chains for pipeline-parallel serving of large models. "
                   "Authenticate with `Authorization: Token <token>` (POST /api/v1/auth/token/). Scenario and plan "
                   "documents: docs/scenario-format.md and docs/plan-format.md in the repository.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "planner_app.planning.models.JobStatus",
                            "ServerStateEnum": "planner_app.liveness.models.STATE_CHOICES"},
    # the ASGI dispatcher's endpoints (not Django views) are described by the last hook
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "planner_app.core.schema.document_errors",
                             "planner_app.core.documents.add_scenario_components",
                             "planner_app.dispatch.schema.add_dispatch_paths"],
}

# --- Celery -------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = (os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
                     or "filesystem://")
EMBEDDED_BROKER = CELERY_BROKER_URL.startswith("filesystem")
if EMBEDDED_BROKER:
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # broadcast/pidbox exchanges (kombu defaults to ./control in the working directory)
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }
else:
    # An unacknowledged message goes back to the queue after this long (a
    # worker killed mid-job).  It must exceed the longest job; duplicates are
    # harmless because the task body is idempotent per job.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 900)}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CHAINPLAN_QUEUE", "chainplan")
CELERY_TASK_IGNORE_RESULT = True          # results live in the database, not the result backend
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 300)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 330)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TIMEZONE = "UTC"
# Schedules live in the database (re-planning schedules are edited in the API and the admin).
CELERY_BEAT_SCHEDULER = os.environ.get("CELERY_BEAT_SCHEDULER", "django_celery_beat.schedulers:DatabaseScheduler")

# Job liveness: a running job's worker refreshes heartbeat_at every
# JOB_HEARTBEAT_S; the sweep treats a job silent for JOB_STALE_AFTER_S as lost.
JOB_HEARTBEAT_S = env_float("CHAINPLAN_HEARTBEAT_S", 5.0)
JOB_STALE_AFTER_S = env_float("CHAINPLAN_STALE_AFTER_S", 60.0)
JOB_SWEEP_INTERVAL_S = env_float("CHAINPLAN_SWEEP_INTERVAL_S", 30.0)
JOB_REQUEUE_QUEUED_AFTER_S = env_float("CHAINPLAN_REQUEUE_QUEUED_AFTER_S", 300.0)
JOB_MAX_ATTEMPTS = env_int("CHAINPLAN_MAX_ATTEMPTS", 3)
DEFAULT_SIMULATE_REQUESTS = env_int("CHAINPLAN_DEFAULT_SIMULATE_REQUESTS", 20000)

# /api/v1/health/: how long to wait for workers to answer, and how long an answer is reused.
HEALTH_TIMEOUT_S = env_float("CHAINPLAN_HEALTH_TIMEOUT_S", 1.0)
HEALTH_CACHE_S = env_float("CHAINPLAN_HEALTH_CACHE_S", 3.0)

# Re-planning: the shortest schedule interval, and how long an adoption webhook may take.
REPLAN_MIN_INTERVAL_S = env_float("CHAINPLAN_MIN_SCHEDULE_INTERVAL_S", 60.0)
REPLAN_WEBHOOK_TIMEOUT_S = env_float("CHAINPLAN_WEBHOOK_TIMEOUT_S", 5.0)
# Webhook URLs are set by users but called from the workers: refuse loopback, private and
# link-local targets (server-side request forgery) unless the operator allows them.
REPLAN_WEBHOOK_ALLOW_PRIVATE = env_bool("CHAINPLAN_WEBHOOK_ALLOW_PRIVATE", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

# Per-process cache (finished jobs' representations, token lookups).
# --- Live dispatcher (docs/dispatcher.md) ----------------------------------------------
# Redis holds the dispatcher's state when configured; else one in-process store (single web process).
# CHAINPLAN_DISPATCH_REDIS_CLUSTER=host:port,... (seed nodes) puts it on a Redis Cluster instead (docs/dispatcher.md,
# "Deployment"); the store takes it as the URL redis+cluster://host:port,...
DISPATCH_REDIS_CLUSTER = os.environ.get("CHAINPLAN_DISPATCH_REDIS_CLUSTER", "").strip()
DISPATCH_REDIS_URL = (("redis+cluster://" + DISPATCH_REDIS_CLUSTER) if DISPATCH_REDIS_CLUSTER else
                      os.environ.get("CHAINPLAN_DISPATCH_REDIS") or os.environ.get("REDIS_URL") or "")
DISPATCH_PREFIX = os.environ.get("CHAINPLAN_DISPATCH_PREFIX", "chainplan:dispatch")
DISPATCH_LEASE_TTL_S = env_float("CHAINPLAN_DISPATCH_LEASE_TTL_S", 30.0)
DISPATCH_SYNC_S = env_float("CHAINPLAN_DISPATCH_SYNC_S", 2.0)          # adopted plans -> store
DISPATCH_OBSERVE_S = env_float("CHAINPLAN_DISPATCH_OBSERVE_S", 60.0)   # store -> observations, triggers
DISPATCH_REPLAN_COOLDOWN_S = env_float("CHAINPLAN_DISPATCH_REPLAN_COOLDOWN_S", 900.0)
DISPATCH_DRIFT_MIN_COMPLETED = env_int("CHAINPLAN_DISPATCH_DRIFT_MIN_COMPLETED", 30)
DISPATCH_OBSERVATION_DAYS = env_int("CHAINPLAN_DISPATCH_OBSERVATION_DAYS", 14)
# server liveness in the dispatcher's store (docs/dispatcher.md, "Liveness and masking"; serving/dispatch/liveness.py)
DISPATCH_SUSPECT_S = env_float("CHAINPLAN_DISPATCH_SUSPECT_S", 1.0)                   # first failure's probation
DISPATCH_SUSPECT_MAX_S = env_float("CHAINPLAN_DISPATCH_SUSPECT_MAX_S", 60.0)          # doubling up to this
DISPATCH_HEARTBEAT_TIMEOUT_S = env_float("CHAINPLAN_DISPATCH_HEARTBEAT_TIMEOUT_S", 6.0)  # silence -> down
METRICS_TOKEN = os.environ.get("CHAINPLAN_METRICS_TOKEN", "")
# Server liveness (docs/liveness.md): how often the dispatcher's process reads the store's transitions and heals;
# the shortest gap between two healing re-plans of a cluster; how long a server that came back must stay up
# before its return re-plans; how long the history is kept.
LIVENESS_POLL_S = env_float("CHAINPLAN_LIVENESS_POLL_S", 1.0)
LIVENESS_REPLAN_MIN_INTERVAL_S = env_float("CHAINPLAN_LIVENESS_REPLAN_MIN_INTERVAL_S", 10.0)
LIVENESS_REJOIN_STABLE_S = env_float("CHAINPLAN_LIVENESS_REJOIN_STABLE_S", 10.0)
LIVENESS_HISTORY_DAYS = env_int("CHAINPLAN_LIVENESS_HISTORY_DAYS", 30)
# a heartbeat that changes no state is written to the database at most this often per server
LIVENESS_HEARTBEAT_RECORD_S = env_float("CHAINPLAN_LIVENESS_HEARTBEAT_RECORD_S", 5.0)
# the models the gateway mounted under /v1/ serves (docs/gateway.md); keys come from the dispatcher's store
GATEWAY_CONFIG = os.environ.get("CHAINPLAN_GATEWAY_CONFIG", "")

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "OPTIONS": {"MAX_ENTRIES": 20_000}}}
TOKEN_CACHE_S = env_int("TOKEN_CACHE_S", 30)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_CONTENT_TYPE_NOSNIFF = True
