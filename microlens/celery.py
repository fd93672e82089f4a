"""The Celery application. Tasks are discovered from the installed apps' ``tasks`` modules."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")

app = Celery("microlens")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
