"""microlens settings, read from the environment (see deploy/env.example for every variable)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

# Where `microlens up` keeps its embedded PostgreSQL cluster, broker folder and state.
MICROLENS_HOME = Path(env_str("MICROLENS_HOME", str(Path.cwd() / ".microlens")) or ".microlens")
MICROLENS_HOME = MICROLENS_HOME.resolve()

DEBUG = env_bool("MICROLENS_DEBUG", False)


def _secret_key() -> str:
    key = env_str("MICROLENS_SECRET_KEY")
    if key:
        return key
    # Without an explicit key, keep a generated one in MICROLENS_HOME so sessions survive
    # restarts of the embedded stack; production sets MICROLENS_SECRET_KEY(_FILE).
    path = MICROLENS_HOME / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        generated = secrets.token_urlsafe(50)
        path.write_text(generated)
        path.chmod(0o600)
        return generated
    except OSError:
        # Read-only filesystem (a container without a volume): a per-process key still
        # lets commands run; the deploy docs require MICROLENS_SECRET_KEY there.
        return secrets.token_urlsafe(50)


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("MICROLENS_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("MICROLENS_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "tracestore",
    "evaluators",
    "dashboard",
    "dashboard.alerts",
    "audit",
    "microlens",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "dashboard.csp.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "dashboard.api.query_params.UnknownQueryParamsMiddleware",
    # Last: answers a locked-out login attempt (see AXES_* below).
    "axes.middleware.AxesMiddleware",
]

# Configuration whose every change is written to the audit log (docs/security.md), and
# fields whose sole change is bookkeeping rather than configuration.
AUDITED_MODELS = (
    "evaluators.Judge",
    "evaluators.MicroModel",
    "evaluators.EvaluatorConfig",
    "dashboard.ModelPrice",
    "tracestore.CohortDimension",
    "alerts.AlertRule",
    "tracestore.ApiKey",
    "tracestore.Project",
)
AUDIT_IGNORED_FIELDS = {"tracestore.ApiKey": ("last_used_at",)}

ROOT_URLCONF = "microlens.urls"
WSGI_APPLICATION = "microlens.wsgi.application"

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


def _database_url() -> str:
    url = env_str("DATABASE_URL")
    if url:
        return url
    # A running `microlens up` records its embedded cluster's URL here, so `manage.py`
    # commands in another shell reach the same database.
    recorded = MICROLENS_HOME / "run" / "database_url"
    if recorded.exists():
        return recorded.read_text().strip()
    return "postgresql://localhost:5432/microlens"


try:
    _db = dj_database_url.parse(
        _database_url(), conn_max_age=env_int("MICROLENS_DB_CONN_MAX_AGE", 60)
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from exc
if _db.get("ENGINE") != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL (postgresql://...)")
_db.setdefault("OPTIONS", {})
# libpq waits forever for a server that accepts the connection but never answers (a
# frozen or overloaded PostgreSQL); a connect_timeout in DATABASE_URL takes precedence.
_db["OPTIONS"].setdefault(
    "connect_timeout", env_int("MICROLENS_DB_CONNECT_TIMEOUT_SECONDS", 5, minimum=2)
)
_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# One date format everywhere (microlens/formats): 2026-12-06 14:05:09.
FORMAT_MODULE_PATH = ["microlens.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("MICROLENS_STATIC_ROOT", str(MICROLENS_HOME / "static")) or "static")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

# Failed logins (/login/ and /admin/login/) are throttled by django-axes: after
# MICROLENS_LOGIN_FAILURE_LIMIT failures for one user name, or from one client address, that
# name or address is refused (HTTP 429, even with the right password) until
# MICROLENS_LOGIN_LOCKOUT_SECONDS have passed since the last failure before the lockout.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("MICROLENS_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("MICROLENS_LOGIN_LOCKOUT_SECONDS", 900, minimum=1))
# Per account or per address (either one locks); the client address is REMOTE_ADDR.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
# Failures during a lockout do not extend it: it ends by itself after the cool-off.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "dashboard/login_locked.html"
AXES_VERBOSE = False

SESSION_COOKIE_HTTPONLY = True
# Secure (HTTPS-only) cookies by default when the dashboard's public address is https; an
# empty MICROLENS_SECURE_COOKIES (as env.example leaves it) keeps that default.
_PUBLIC_HTTPS = (env_str("MICROLENS_PUBLIC_URL", "") or "").strip().lower().startswith("https://")
SESSION_COOKIE_SECURE = (
    env_bool("MICROLENS_SECURE_COOKIES")
    if (env_str("MICROLENS_SECURE_COOKIES", "") or "").strip()
    else _PUBLIC_HTTPS
)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    # A project API key first: a request carrying a wrong key fails even with a session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "dashboard.api.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "EXCEPTION_HANDLER": "dashboard.api.errors.api_exception_handler",
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "microlens API",
    "DESCRIPTION": "Traces, evaluations and metrics of micro models."
    " [Back to the dashboard](/overview/).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The docs page's assets come from the drf-spectacular-sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # The schema and its docs describe every endpoint: for logged-in people and API keys.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
}

# Celery: with no broker configured, kombu's filesystem transport needs no server and
# works across processes on one host. Jobs live in PostgreSQL; the broker only wakes workers.
# microlens.broker's subclass writes each message file atomically and quarantines files
# that do not decode (kombu's own lets a worker read a half-written file and crash).
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or "filesystem://"
_broker_dir = MICROLENS_HOME / "broker"
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT = "microlens.broker:Transport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "quarantine_folder": str(_broker_dir / "quarantine"),
        "store_processed": False,
    }
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BEAT_SCHEDULE_FILENAME = str(MICROLENS_HOME / "run" / "celerybeat-schedule")
CELERY_HEARTBEAT_SECONDS = env_int("MICROLENS_HEARTBEAT_SECONDS", 30, minimum=1)
CELERY_BEAT_SCHEDULE = {
    # Partitions ahead + retention; idempotent, so running it often is harmless.
    "tracestore-maintain-partitions": {
        "task": "tracestore.maintain_partitions",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    # Expires after one period: while no worker runs, stale heartbeats must not pile up
    # in the broker and later fake a burst of liveness.
    "microlens-heartbeat": {
        "task": "microlens.heartbeat",
        "schedule": float(CELERY_HEARTBEAT_SECONDS),
        "options": {"expires": float(CELERY_HEARTBEAT_SECONDS)},
    },
    # Folds changed traces into the dashboard's metric rollups (idempotent, one at a time).
    "dashboard-refresh-metrics": {
        "task": "dashboard.refresh_metrics",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
}

# Ingest.
# Spans older than this many days are dropped (whole daily partitions).
MICROLENS_RETENTION_DAYS = env_int("MICROLENS_RETENTION_DAYS", 30, minimum=1)
MICROLENS_PARTITION_DAYS_AHEAD = env_int("MICROLENS_PARTITION_DAYS_AHEAD", 3, minimum=1)
# A span whose start is older than this many days when received (or older than the next
# retention run keeps, whichever is later) is flagged FLAG_OLD_START and kept for the
# retention period counted from its receipt.
MICROLENS_SPAN_MAX_AGE_DAYS = env_int(
    "MICROLENS_SPAN_MAX_AGE_DAYS", MICROLENS_RETENTION_DAYS, minimum=1
)
MICROLENS_GRPC_MAX_MESSAGE_BYTES = env_int(
    "MICROLENS_GRPC_MAX_MESSAGE_BYTES", 16 * 1024 * 1024, minimum=1024
)
MICROLENS_MAX_ATTRIBUTE_VALUE_BYTES = env_int(
    "MICROLENS_MAX_ATTRIBUTE_VALUE_BYTES", 64 * 1024, minimum=64
)
MICROLENS_MAX_ATTRIBUTES = env_int("MICROLENS_MAX_ATTRIBUTES", 512, minimum=8)
MICROLENS_HTTP_MAX_BODY_BYTES = env_int(
    "MICROLENS_HTTP_MAX_BODY_BYTES", 16 * 1024 * 1024, minimum=1024
)
# Each receiver process decodes or writes at most MAX_IN_FLIGHT exports, and request bodies
# of at most MAX_IN_FLIGHT_BYTES (as received), at once; more wait 0.5 s, then are answered
# UNAVAILABLE / 503 with a retry delay.
MICROLENS_INGEST_MAX_IN_FLIGHT = env_int("MICROLENS_INGEST_MAX_IN_FLIGHT", 8, minimum=1)
MICROLENS_INGEST_MAX_IN_FLIGHT_BYTES = env_int(
    "MICROLENS_INGEST_MAX_IN_FLIGHT_BYTES", 64 * 1024 * 1024, minimum=1024
)
# An export waits at most this long on the database (each statement and lock wait, and a
# database that does not answer at all), then is answered UNAVAILABLE. 0: no bound.
MICROLENS_INGEST_DB_TIMEOUT_SECONDS = env_int("MICROLENS_INGEST_DB_TIMEOUT_SECONDS", 5, minimum=0)
# The receivers re-read the configured cohort dimensions at most this often (seconds), so a
# key added in the admin is extracted from spans received this long after, with no restart.
MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS = env_int(
    "MICROLENS_COHORT_DIMENSIONS_REFRESH_SECONDS", 10, minimum=0
)
# Browser origins allowed to export over OTLP/HTTP (CORS): exact origins, "*", or "*" in
# a host or port ("https://*.example.com"). Empty: no CORS.
MICROLENS_OTLP_CORS_ORIGINS = env_list("MICROLENS_OTLP_CORS_ORIGINS", [])
MICROLENS_OTLP_CORS_MAX_AGE = env_int("MICROLENS_OTLP_CORS_MAX_AGE", 7200, minimum=0)

# Judges (evaluators issue).
MICROLENS_JUDGE_URL = env_str("MICROLENS_JUDGE_URL", "")
MICROLENS_JUDGE_MODEL = env_str("MICROLENS_JUDGE_MODEL", "")
MICROLENS_JUDGE_API_KEY = env_str("MICROLENS_JUDGE_API_KEY", "")

# Evaluations: a trace is judged once no span arrived for QUIET seconds; a claim expires
# after LEASE seconds (longer than any judge call); jobs still not run REDISPATCH seconds
# after they were due are sent again by the sweeper; a job fails after MAX_ATTEMPTS.
MICROLENS_EVAL_QUIET_SECONDS = env_int("MICROLENS_EVAL_QUIET_SECONDS", 60, minimum=0)
MICROLENS_EVAL_LEASE_SECONDS = env_int("MICROLENS_EVAL_LEASE_SECONDS", 300, minimum=1)
MICROLENS_EVAL_REDISPATCH_SECONDS = env_int("MICROLENS_EVAL_REDISPATCH_SECONDS", 120, minimum=1)
MICROLENS_EVAL_MAX_ATTEMPTS = env_int("MICROLENS_EVAL_MAX_ATTEMPTS", 5, minimum=1)
MICROLENS_EVAL_SCHEDULE_SECONDS = env_int("MICROLENS_EVAL_SCHEDULE_SECONDS", 30, minimum=1)
# `auto`: the MiniLM judge when its packages are installed, else lexical; `lexical`: always.
MICROLENS_LOCAL_JUDGE = env_str("MICROLENS_LOCAL_JUDGE", "auto")
# LLM judges at private, loopback or link-local addresses (a local LLM server) only when set.
MICROLENS_JUDGE_ALLOW_PRIVATE = env_bool("MICROLENS_JUDGE_ALLOW_PRIVATE")
if MICROLENS_LOCAL_JUDGE not in ("auto", "lexical"):
    raise ImproperlyConfigured("MICROLENS_LOCAL_JUDGE must be auto or lexical")
# Both expire after one period: a backlog of beat messages must not run them in a burst.
CELERY_BEAT_SCHEDULE["evaluators-schedule"] = {
    "task": "evaluators.schedule",
    "schedule": float(MICROLENS_EVAL_SCHEDULE_SECONDS),
    "options": {"expires": float(MICROLENS_EVAL_SCHEDULE_SECONDS)},
}
CELERY_BEAT_SCHEDULE["evaluators-sweep"] = {
    "task": "evaluators.sweep",
    "schedule": float(MICROLENS_EVAL_SCHEDULE_SECONDS),
    "options": {"expires": float(MICROLENS_EVAL_SCHEDULE_SECONDS)},
}

# Alerts: rules are evaluated every EVAL seconds; a delivery's claim lasts LEASE seconds
# (longer than the webhook timeout); a delivery fails after MAX_ATTEMPTS.
MICROLENS_ALERT_EVAL_SECONDS = env_int("MICROLENS_ALERT_EVAL_SECONDS", 60, minimum=1)
MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = env_bool("MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS")
MICROLENS_ALERT_WEBHOOK_TIMEOUT_SECONDS = env_int(
    "MICROLENS_ALERT_WEBHOOK_TIMEOUT_SECONDS", 10, minimum=1
)
MICROLENS_ALERT_DELIVERY_LEASE_SECONDS = env_int(
    "MICROLENS_ALERT_DELIVERY_LEASE_SECONDS", 60, minimum=1
)
if MICROLENS_ALERT_DELIVERY_LEASE_SECONDS <= MICROLENS_ALERT_WEBHOOK_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        "MICROLENS_ALERT_DELIVERY_LEASE_SECONDS must exceed MICROLENS_ALERT_WEBHOOK_TIMEOUT_SECONDS"
    )
MICROLENS_ALERT_MAX_ATTEMPTS = env_int("MICROLENS_ALERT_MAX_ATTEMPTS", 8, minimum=1)
# The dashboard's address as people reach it, for links in notifications.
MICROLENS_PUBLIC_URL = env_str("MICROLENS_PUBLIC_URL", "http://localhost:8000")
# The OTLP receivers' ports (`microlens up` passes the ones it binds to every process), and
# where apps send traces as the dashboard's empty states show it: by default the public
# URL's host with those ports.
MICROLENS_GRPC_PORT = env_int("MICROLENS_GRPC_PORT", 4317, minimum=1)
MICROLENS_HTTP_PORT = env_int("MICROLENS_HTTP_PORT", 4318, minimum=1)
_OTLP_HOST = urlsplit(MICROLENS_PUBLIC_URL or "").hostname or "localhost"
_OTLP_HOST = f"[{_OTLP_HOST}]" if ":" in _OTLP_HOST else _OTLP_HOST
MICROLENS_OTLP_GRPC_ENDPOINT = (
    env_str("MICROLENS_OTLP_GRPC_ENDPOINT") or f"{_OTLP_HOST}:{MICROLENS_GRPC_PORT}"
)
MICROLENS_OTLP_HTTP_ENDPOINT = (
    env_str("MICROLENS_OTLP_HTTP_ENDPOINT")
    or f"http://{_OTLP_HOST}:{MICROLENS_HTTP_PORT}/v1/traces"
)
EMAIL_HOST = env_str("MICROLENS_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("MICROLENS_EMAIL_PORT", 25, minimum=1)
DEFAULT_FROM_EMAIL = env_str("MICROLENS_EMAIL_FROM", "microlens@localhost")
# Expires after one period: a backlog must not evaluate in a burst (a run is idempotent).
CELERY_BEAT_SCHEDULE["alerts-evaluate"] = {
    "task": "alerts.evaluate",
    "schedule": float(MICROLENS_ALERT_EVAL_SECONDS),
    "options": {"expires": float(MICROLENS_ALERT_EVAL_SECONDS)},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("MICROLENS_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
    },
}
