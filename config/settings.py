"""Followtrade settings: one module, configured by environment variables (see README.md)."""
import os
from decimal import Decimal
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from config import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    return [item.strip() for item in value.split(",") if item.strip()] if value else default


DEBUG = env_bool("DEBUG", True)
DEV_SECRET_KEY = "django-insecure-followtrade-development-key-do-not-deploy"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or DEV_SECRET_KEY
if not DEBUG and SECRET_KEY == DEV_SECRET_KEY:
    raise ImproperlyConfigured("set DJANGO_SECRET_KEY when DEBUG is off")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

# Without DATABASE_URL / REDIS_URL an embedded server under the data folder is started (or reused).
DATABASE_URL = os.environ.get("DATABASE_URL") or embedded.postgres_url()
REDIS_URL = os.environ.get("REDIS_URL") or embedded.redis_url()

DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL")
# Seconds a connection is kept between requests or tasks (0: one per request). The Celery workers
# keep theirs (Procfile): a copy fan-out task otherwise starts on a new PostgreSQL backend (its first
# query 7-9 ms slower). The web server does not: under ASGI Django advises against persistent connections.
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DATABASE_CONN_MAX_AGE", "0"))
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# a server that does not answer fails a connection in seconds, not minutes: a Celery pool process
# that connects as it starts has 4 s to start (worker_proc_alive_timeout) before it is replaced
DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)
# PostgreSQL's JIT compiler is for long analytic queries; here every statement is short. It compiled
# the engine's sweep, a read of a few hundred queue rows that runs in 1-6 ms, for 73-109 ms whenever
# the planner overestimated the table (rows deleted and not yet vacuumed): a stall of the engine's
# loop each time (docs/BENCHMARKS.md, "JIT"). So connections ask for it off, beside any options
# DATABASE_URL gives. DATABASE_JIT=server leaves it to the server, for a pooler that refuses startup
# options (PgBouncer): there, `ALTER DATABASE ... SET jit = off`.
DATABASE_JIT = os.environ.get("DATABASE_JIT", "off").strip().lower()
if DATABASE_JIT not in ("off", "server"):
    raise ImproperlyConfigured(f"DATABASE_JIT must be off or server, got {DATABASE_JIT!r}")
if DATABASE_JIT == "off":
    _url_options = DATABASES["default"]["OPTIONS"].get("options") or []  # a list if the URL repeats it
    DATABASES["default"]["OPTIONS"]["options"] = " ".join(
        [*map(str, _url_options if isinstance(_url_options, list) else [_url_options]), "-c jit=off"])
# Statements prepared on the server after this many uses (the engine turns it on for its own
# connections: matching.engine.prepare_statements_on_the_server); "none" never prepares, for a
# connection pooler that cannot keep prepared statements.
if "DATABASE_PREPARE_THRESHOLD" in os.environ:
    _threshold = os.environ["DATABASE_PREPARE_THRESHOLD"].strip().lower()
    if _threshold != "none" and not _threshold.isdigit():
        raise ImproperlyConfigured(f"DATABASE_PREPARE_THRESHOLD must be a whole number or none, got {_threshold!r}")
    DATABASES["default"]["OPTIONS"]["prepare_threshold"] = None if _threshold == "none" else int(_threshold)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "channels",
    "accounts",
    "matching",
    "copytrade",
    "bots",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / ".data" / "static"

REST_FRAMEWORK = {
    "EXCEPTION_HANDLER": "config.api.exception_handler",
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PARSER_CLASSES": ["config.api.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer", "rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Followtrade API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL]},
    },
}

# Celery (config/celery.py reads the CELERY_* names). Kombu spells a Redis socket redis+socket://.
CELERY_BROKER_URL = CELERY_RESULT_BACKEND = (
    "redis+socket://" + REDIS_URL.removeprefix("unix://") if REDIS_URL.startswith("unix://") else REDIS_URL
)
CELERY_TASK_ACKS_LATE = True  # a task whose worker dies is redelivered, not lost
# how long a delivered, unacknowledged task waits before Redis hands it to another worker
# (and how often workers look for such tasks: about every interval x throttle seconds)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "300")),
    "unacked_restore_interval": int(os.environ.get("CELERY_RESTORE_INTERVAL", "10")),
    "unacked_restore_throttle": int(os.environ.get("CELERY_RESTORE_THROTTLE", "10")),
}
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery closes a worker's database connection after every task unless it may keep it for this many
# tasks; around each task config/celery.py drops it by Django's own rule instead (older than
# CONN_MAX_AGE, or broken), as around a web request
CELERY_DB_REUSE_MAX = 500
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE

# Trading core (docs/ENGINE.md)
ENGINE_STREAM_PREFIX = os.environ.get("ENGINE_STREAM_PREFIX", "engine")
ENGINE_REPLY_TIMEOUT = float(os.environ.get("ENGINE_REPLY_TIMEOUT", "2"))  # seconds a request waits for the engine
# a stored order or command this old with no stream entry is applied from the database
ENGINE_SWEEP_SECONDS = float(os.environ.get("ENGINE_SWEEP_SECONDS", "2"))
MARKET_PROTECTION = Decimal("0.05")  # a market order fills at most 5% away from the price it was sent at
DEFAULT_LEVERAGE = Decimal(10)
PUBLISHED_DEPTH = 500  # L2 levels per side the engine publishes changes of
FAUCET_LIMITS = {"XBT": "1", "USDT": "100000", "USDC": "100000", "ETH": "20"}  # demo money per request
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "account"
LOGOUT_REDIRECT_URL = "home"
CELERY_BEAT_SCHEDULE = {
    "audit-books": {"task": "accounts.tasks.audit_books", "schedule": 60.0},
    "settle-profit-shares": {"task": "copytrade.tasks.settle_profit_shares", "schedule": crontab(minute=5, hour=0)},
    "copy-equity-stops": {"task": "copytrade.tasks.check_equity_stops", "schedule": 15.0},
    "close-stopped-copies": {"task": "copytrade.tasks.close_stopped_copies", "schedule": 5.0},
    "copy-missed-executions": {"task": "copytrade.tasks.copy_missed_executions", "schedule": 5.0},
}
# a leader's fills are copied in order: the fan-out has its own queue and a worker with one process
CELERY_TASK_ROUTES = {"copytrade.tasks.fan_out": {"queue": "fanout"},
                      "copytrade.tasks.copy_missed_executions": {"queue": "fanout"}}
