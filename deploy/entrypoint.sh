#!/bin/sh
# Container entry point: the first argument names the role; every setting comes from the
# environment (deploy/env.example lists them).
set -eu
role="${1:-web}"
shift || true
host="${MICROLENS_BIND:-0.0.0.0}"
case "$role" in
  migrate)
    python manage.py migrate --noinput "$@"
    # Warns about stored configuration a newer version no longer uses (a judge whose key
    # variable lacks the MICROLENS_JUDGE_ prefix); warnings do not fail the role.
    exec python manage.py check --database default ;;
  web)
    exec gunicorn microlens.wsgi:application --bind "$host:${MICROLENS_WEB_PORT:-8000}" \
      --workers "${MICROLENS_WEB_WORKERS:-2}" --access-logfile - "$@" ;;
  receiver)
    exec python manage.py run_receiver --host "$host" --port "${MICROLENS_GRPC_PORT:-4317}" "$@" ;;
  http-receiver)
    exec python manage.py run_http_receiver --host "$host" --port "${MICROLENS_HTTP_PORT:-4318}" "$@" ;;
  worker)
    exec celery -A microlens worker --loglevel "${MICROLENS_LOG_LEVEL:-INFO}" "$@" ;;
  beat)
    exec celery -A microlens beat --loglevel "${MICROLENS_LOG_LEVEL:-INFO}" \
      --schedule "${MICROLENS_HOME}/celerybeat-schedule" "$@" ;;
  *)
    exec "$role" "$@" ;;
esac
