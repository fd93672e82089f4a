"""Admin for what the dashboard's metrics are configured by: model prices. An edit changes
how history is folded: after it, run ``manage.py refresh_metrics --rebuild`` (prices apply
from their date on). Cohort dimensions are configured with the spans (tracestore's admin):
ingest reads them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest

from .models import ModelPrice

_REBUILD_HINT = (
    "Saved. Metrics already folded keep the old values until you run "
    "`manage.py refresh_metrics --rebuild`."
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
        messages.info(request, _REBUILD_HINT)
