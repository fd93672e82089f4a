"""microlens: the Django project package (settings, urls, Celery app, the `microlens` command)."""

from .celery import app as celery_app

__all__ = ["celery_app"]
