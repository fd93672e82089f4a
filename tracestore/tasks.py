"""tracestore's Celery tasks."""

from __future__ import annotations

import logging

from celery import shared_task

from .services import maintain_span_partitions

log = logging.getLogger(__name__)


@shared_task(name="tracestore.maintain_partitions", ignore_result=True)
def maintain_partitions() -> None:
    result = maintain_span_partitions()
    log.info(
        "partitions.maintained created=%s dropped=%s",
        result.partitions_created,
        result.partitions_dropped,
    )
