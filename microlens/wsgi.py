"""WSGI entry point (gunicorn ``microlens.wsgi:application``)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "microlens.settings")
application = get_wsgi_application()
