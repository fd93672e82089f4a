"""Output shapes of the API, read straight from tracestore's contracts dataclasses."""

from __future__ import annotations

from rest_framework import serializers

from .evaluation_serializers import EvaluationSerializer


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


class TraceSummarySerializer(serializers.Serializer):
    project_id = serializers.IntegerField()
    trace_id = serializers.CharField(help_text="32 hex characters.")
    start_time = serializers.DateTimeField(allow_null=True)
    end_time = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    root_span_id = serializers.CharField(allow_null=True)
    root_name = serializers.CharField(
        allow_null=True, help_text="Null while the root span has not been received."
    )
    service_name = serializers.CharField(allow_null=True)
    span_count = serializers.IntegerField()
    error_count = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["ok", "error"])
    models = serializers.ListField(child=serializers.CharField())
    micro_models = serializers.ListField(child=serializers.CharField())
    routes = serializers.ListField(child=serializers.CharField())
    is_fallback = serializers.BooleanField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cohort = serializers.DictField(child=serializers.CharField())


class SpanSerializer(serializers.Serializer):
    project_id = serializers.IntegerField()
    trace_id = serializers.CharField()
    span_id = serializers.CharField(help_text="16 hex characters.")
    parent_span_id = serializers.CharField(allow_null=True)
    name = serializers.CharField()
    kind = serializers.IntegerField(help_text="OTLP SpanKind number.")
    start_time = serializers.DateTimeField()
    end_time = serializers.DateTimeField()
    duration_ms = serializers.FloatField()
    status_code = serializers.IntegerField(help_text="0 unset, 1 ok, 2 error.")
    status_message = serializers.CharField(allow_blank=True)
    service_name = serializers.CharField(allow_blank=True)
    scope_name = serializers.CharField(allow_blank=True)
    scope_version = serializers.CharField(allow_blank=True)
    attributes = serializers.DictField(child=serializers.JSONField())
    resource_attributes = serializers.DictField(child=serializers.JSONField())
    events = serializers.ListField(child=serializers.DictField(child=serializers.JSONField()))
    links = serializers.ListField(child=serializers.DictField(child=serializers.JSONField()))
    flags = serializers.IntegerField()
    span_kind = serializers.CharField(allow_null=True)
    model = serializers.CharField(allow_null=True)
    provider = serializers.CharField(allow_null=True)
    micro_model = serializers.CharField(allow_null=True)
    prompt_tokens = serializers.IntegerField(allow_null=True)
    completion_tokens = serializers.IntegerField(allow_null=True)
    input_text = serializers.CharField(allow_null=True)
    output_text = serializers.CharField(allow_null=True)
    route = serializers.CharField(allow_null=True)
    label = serializers.CharField(allow_null=True)  # type: ignore[assignment]  # a field named like a Field attribute
    confidence = serializers.FloatField(allow_null=True)
    expected_label = serializers.CharField(
        allow_null=True,
        help_text="The span's micro_model.expected_label, or the label posted later as feedback"
        " (feedback wins).",
    )
    expected_label_source = serializers.ChoiceField(
        choices=["attribute", "feedback"],
        allow_null=True,
        help_text="Where expected_label came from.",
    )
    is_fallback = serializers.BooleanField()
    is_retry = serializers.BooleanField()
    cache_hit = serializers.BooleanField()
    is_mirrored = serializers.BooleanField()
    mirror_of = serializers.CharField(allow_null=True)
    cohort = serializers.DictField(
        child=serializers.CharField(),
        help_text="The trace's cohort, as traces, evaluations and metrics carry it: each"
        " configured cohort dimension's value on the root span (its attribute, else its"
        " resource's), else on the earliest span carrying it. The span's own values are in"
        " `attributes` and `resource_attributes`.",
    )
    evaluations = EvaluationSerializer(many=True, help_text="This span's evaluation results.")


class TraceDetailSerializer(serializers.Serializer):
    trace = TraceSummarySerializer(source="summary")
    spans = SpanSerializer(many=True)


class TracePageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or null.")
    results = TraceSummarySerializer(many=True)


class TraceListQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(required=False, help_text="From the previous page's `next`.")
    service = serializers.CharField(required=False, help_text="Only traces of this service.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
