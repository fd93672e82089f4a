"""Alert rules on the dashboard's metrics: evaluated by Celery beat, notified once per
transition (see README.md)."""
