"""The example bucket's Celery app: ``celery -A example_project.celery worker``.

The observability integration is the one line at the bottom; nothing in the tasks knows about it. The broker is
``CELERY_BROKER_URL`` (default: the local Redis, ``redis://127.0.0.1:6379/0``).
"""

import os

from celery import Celery

import observability_app.integrations.celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["example_project.bucket"])
observability_app.integrations.celery.install(app)
