"""Keep per-hour counts of results honest when results change without being written.

Deleting a micro model deletes its results (cascade), and renaming one moves its results
to the new name, yet no result row gets a new ``updated_at``: readers that re-count the
hours whose results changed (the dashboard's evaluation rollup) would never see it. These
handlers mark those hours in ``EvaluationHourChange`` inside the same transaction, so the
marks commit or roll back with the change itself.
"""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models.signals import pre_delete, pre_save
from django.dispatch import receiver

from .models import MicroModel
from .queries import _HOUR


def record_hour_changes(micro_model_id: int) -> None:
    """Mark every hour holding results of ``micro_model_id`` as changed, and forget marks
    older than a month (folds read them every minute; a month covers any pause)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO evaluators_evaluationhourchange (project_id, hour, changed_at)"  # noqa: S608 (constant SQL; values are parameters)
            f" SELECT DISTINCT project_id, {_HOUR}, now() FROM evaluators_evaluationresult"
            " WHERE micro_model_id = %s",
            [micro_model_id],
        )
        cursor.execute(
            "DELETE FROM evaluators_evaluationhourchange"
            " WHERE changed_at < now() - interval '30 days'"
        )


@receiver(pre_delete, sender=MicroModel, dispatch_uid="evaluators.micromodel.deleted")
def _micro_model_deleted(sender: type[MicroModel], instance: MicroModel, **kwargs: Any) -> None:
    record_hour_changes(instance.pk)


@receiver(pre_save, sender=MicroModel, dispatch_uid="evaluators.micromodel.renamed")
def _micro_model_renamed(
    sender: type[MicroModel], instance: MicroModel, raw: bool = False, **kwargs: Any
) -> None:
    if raw or instance._state.adding or instance.pk is None:
        return
    old_name = MicroModel.objects.filter(pk=instance.pk).values_list("name", flat=True).first()
    if old_name is not None and old_name != instance.name:
        record_hour_changes(instance.pk)
