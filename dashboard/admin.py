"""Admin for what the dashboard's metrics are configured by: model prices. A price saved or
deleted reaches the figures by itself: the next fold (every minute) re-prices the traces it
applies to (``dashboard/signals.py``). Cohort dimensions are configured with the spans
(tracestore's admin): ingest reads them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import ModelPrice

_PRICE_HINT = (
    "Saved. Within a minute, costs are recomputed for the traces that used a matching model"
    " from its effective day on."
)
_PRICE_DELETED_HINT = (
    "Deleted. Within a minute, the traces it priced show their cost without it, and the"
    " model is listed as having no price where no other price applies."
)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = (
        "model_pattern",
        "effective_from",
        "input_per_million",
        "output_per_million",
        "cached_input_per_million",
    )
    search_fields = ("model_pattern",)
    list_filter = ("effective_from",)

    def save_model(self, request: HttpRequest, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        messages.info(request, _PRICE_HINT)

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        messages.info(request, _PRICE_DELETED_HINT)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        messages.info(request, _PRICE_DELETED_HINT)
