from __future__ import annotations

from django.contrib import admin
from django.db import models

from .models import (
    EvaluationJob,
    EvaluationResult,
    EvaluatorConfig,
    Feedback,
    Judge,
    MicroModel,
)


@admin.register(Judge)
class JudgeAdmin(admin.ModelAdmin):
    # The API key is never stored: the row only names the environment variable holding it.
    list_display = ("name", "kind", "base_url", "model", "timeout_seconds", "concurrency")
    fields = ("name", "kind", "base_url", "model", "api_key_env", "timeout_seconds", "concurrency")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


class EvaluatorConfigInline(admin.TabularInline):
    model = EvaluatorConfig
    extra = 0


@admin.register(MicroModel)
class MicroModelAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "task", "sample_rate", "evaluators", "auto_registered")
    list_filter = ("project", "task", "auto_registered")
    search_fields = ("name", "micro_model_name", "model_pattern")
    inlines = [EvaluatorConfigInline]
    fieldsets = (
        (None, {"fields": ("project", "name", "task")}),
        ("Matching", {"fields": ("micro_model_name", "model_pattern")}),
        ("Decision", {"fields": ("label_attribute", "confidence_attribute", "label_synonyms")}),
        ("Fallback", {"fields": ("fallback_models",)}),
        (
            "Sampling",
            {
                "fields": (
                    "sample_rate",
                    "always_on_fallback",
                    "always_on_error",
                    "always_below_confidence",
                    "hourly_judge_budget",
                )
            },
        ),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("evaluators__judge")

    @admin.display(description="evaluators (judge)")
    def evaluators(self, micro_model: MicroModel) -> str:
        """Each evaluator the model runs and the judge scoring it ("local" when none is set)."""
        configs = sorted(micro_model.evaluators.all(), key=lambda c: c.evaluator)
        return (
            ", ".join(
                f"{c.evaluator} ({c.judge.name if c.judge else 'local'})"
                + ("" if c.enabled else " off")
                for c in configs
            )
            or "-"
        )


def _hex(value: bytes | memoryview) -> str:
    return bytes(value).hex()


@admin.register(EvaluationJob)
class EvaluationJobAdmin(admin.ModelAdmin):
    list_display = ("id", "evaluator", "status", "attempts", "trace", "created_at", "last_error")
    list_filter = ("status", "evaluator")
    readonly_fields = [f.name for f in EvaluationJob._meta.fields]

    @admin.display(description="trace")
    def trace(self, job: EvaluationJob) -> str:
        return _hex(job.trace_id)

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(EvaluationResult)
class EvaluationResultAdmin(admin.ModelAdmin):
    list_display = ("id", "evaluator", "passed", "score_shown", "judge", "trace", "span_start_time")
    list_filter = ("evaluator", "passed", "judge", "source")
    readonly_fields = [f.name for f in EvaluationResult._meta.fields]

    @admin.display(description="trace")
    def trace(self, result: EvaluationResult) -> str:
        return _hex(result.trace_id)

    # Scores are 0..1: three decimals, not the float's seventeen digits.
    @admin.display(description="score", ordering="score")
    def score_shown(self, result: EvaluationResult) -> str:
        return "-" if result.score is None else f"{result.score:.3f}"

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("id", "trace", "expected_label", "thumbs_up", "author", "updated_at")

    @admin.display(description="trace")
    def trace(self, feedback: Feedback) -> str:
        return _hex(feedback.trace_id)
