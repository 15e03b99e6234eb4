"""Settings of the example artifact bucket service.

The database comes from ``DATABASE_URL`` (default: ``var/example.sqlite3``); everything the observability app
reads per environment comes from ``OBSERVABILITY_*`` variables (see docs/settings.md).
"""

import os
from pathlib import Path

import dj_database_url

from observability_app.logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "observability_app",
    "example_project.bucket",
]

MIDDLEWARE = [
    "observability_app.middleware.ObservabilityMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'example.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20})
    import django

    if django.VERSION >= (5, 1):
        # Writers take the lock when their transaction begins and wait for it (timeout above): a read that later
        # writes (the scan) would otherwise fail at once with "database is locked" beside a second worker process.
        DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, for the test database: threads in the concurrency tests share it like processes would.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

#: Artifacts larger than this are refused with 413 before they are read.
ARTIFACT_MAX_BYTES = int(os.environ.get("ARTIFACT_MAX_BYTES", 16 * 1024 * 1024))
DATA_UPLOAD_MAX_MEMORY_SIZE = ARTIFACT_MAX_BYTES
#: What bucket_storage_capacity_bytes reports per bucket.
#: The design's bucket type per bucket (model, dataset, generic): the write metric's bucket_type label.
BUCKET_TYPES = {"models": "model", "datasets": "dataset"}
BUCKET_CAPACITY_BYTES = int(os.environ.get("BUCKET_CAPACITY_BYTES", 10 * 1024**3))

OBSERVABILITY = {
    "SERVICE_NAME": "artifact-bucket",
    "ENVIRONMENT": os.environ.get("OBSERVABILITY_ENVIRONMENT", "development"),
    "AUDIT_SIGNING_KEY": os.environ.get("EXAMPLE_AUDIT_SIGNING_KEY", "example-signing-key-change-me"),
    "DEBUG_LOGGING_ENABLED": True,  # X-Debug-Logging: full, for staff users only
}

# JSON lines on stdout; OBSERVABILITY_LOG_LEVEL sets the level, EXAMPLE_ACCESS_LOG sends access lines to a file.
LOGGING = logging_config(access_log=os.environ.get("EXAMPLE_ACCESS_LOG"))

# Background work: the safety scan runs as a Celery task (example_project/celery.py) on the local Redis.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A request must not hang on a broker that is down: publishing gives up after about a second.
CELERY_BROKER_CONNECTION_TIMEOUT = 1.0
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_timeout": 2.0, "socket_connect_timeout": 1.0}
#: EXAMPLE_SCAN_ON_UPLOAD=1 (set by `make run`): every upload enqueues its safety scan once committed.
BUCKET_SCAN_ON_UPLOAD = os.environ.get("EXAMPLE_SCAN_ON_UPLOAD", "0") == "1"
#: EXAMPLE_FAULT_INJECTION=1: `X-Simulate-Transient-Failures: N` makes the scan task's first N attempts fail, and
#: `X-Simulate-Error: 1` makes an artifact request fail with 500 (the 5xx alert's tests and the traffic script).
BUCKET_FAULT_INJECTION = os.environ.get("EXAMPLE_FAULT_INJECTION", "0") == "1"
OBSERVABILITY["CELERY_APP"] = "example_project.celery.app"
