"""Price changes reach the figures without a rebuild.

Cost is computed when a trace is folded, so a price saved or deleted later would never
reach traces already folded. These handlers record each change (the old pattern and day
as well as the new, when a price is edited) in ``PriceChange`` inside the change's own
transaction; the next fold (``metrics.refresh.fold_changes``, every minute) re-prices the
traces that used a matching model from that day on and re-sums their hours.
"""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from .models import ModelPrice, PriceChange


def record_price_change(model_pattern: str, effective_from: Any) -> None:
    PriceChange.objects.create(model_pattern=model_pattern, effective_from=effective_from)


@receiver(pre_save, sender=ModelPrice, dispatch_uid="dashboard.modelprice.edited")
def _price_edited(
    sender: type[ModelPrice], instance: ModelPrice, raw: bool = False, **kwargs: Any
) -> None:
    # An edit that moves the pattern or the day leaves traces the old one priced.
    if raw or instance._state.adding or instance.pk is None:
        return
    old = (
        ModelPrice.objects.filter(pk=instance.pk)
        .values_list("model_pattern", "effective_from")
        .first()
    )
    if old is not None and old != (instance.model_pattern, instance.effective_from):
        record_price_change(*old)


@receiver(post_save, sender=ModelPrice, dispatch_uid="dashboard.modelprice.saved")
def _price_saved(
    sender: type[ModelPrice], instance: ModelPrice, raw: bool = False, **kwargs: Any
) -> None:
    if not raw:
        record_price_change(instance.model_pattern, instance.effective_from)


@receiver(post_delete, sender=ModelPrice, dispatch_uid="dashboard.modelprice.deleted")
def _price_deleted(sender: type[ModelPrice], instance: ModelPrice, **kwargs: Any) -> None:
    record_price_change(instance.model_pattern, instance.effective_from)
