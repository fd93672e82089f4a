"""The output shape of one evaluation, shared by the evaluations list and the trace detail."""

from __future__ import annotations

from rest_framework import serializers

from evaluators.contracts import EVALUATORS


class EvaluationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    trace_id = serializers.CharField()
    span_id = serializers.CharField()
    span_start_time = serializers.DateTimeField()
    micro_model = serializers.CharField()
    evaluator = serializers.ChoiceField(choices=list(EVALUATORS))
    evaluator_version = serializers.IntegerField()
    score = serializers.FloatField(allow_null=True, help_text="In [0, 1]; null: not applicable.")
    passed = serializers.BooleanField(allow_null=True, help_text="Null: not applicable.")
    threshold = serializers.FloatField()
    reason = serializers.CharField()
    judge = serializers.CharField(
        help_text="Which judge decided: rule, local-lexical, local-minilm, exact, or an LLM "
        "judge's name."
    )
    judge_version = serializers.CharField(
        help_text="The deciding judge's model version or file checksum."
    )
    judge_fallback = serializers.CharField(
        help_text="Why the configured judge did not decide (a fallback); empty when it did."
    )
    latency_ms = serializers.FloatField()
    sampling_probability = serializers.FloatField(
        help_text="Probability that this span was sampled (reweight by its inverse)."
    )
    predicted_label = serializers.CharField(allow_null=True)
    expected_label = serializers.CharField(allow_null=True)
    source = serializers.ChoiceField(choices=["scheduled", "feedback"])  # type: ignore[assignment]  # a field named like a Field attribute
    cohort = serializers.DictField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
