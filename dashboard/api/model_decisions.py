"""``/api/v1/micro-models/<name>/shadow/`` and ``.../thresholds/``: what a micro model's
decisions say about a candidate (shadow agreement) and about its confidence threshold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import metrics
from ..access import visible_project_ids
from ..metric_filters import ProjectNotFound, parse_metric_query
from ..metrics.shadow import shadow_agreement
from ..metrics.thresholds import parse_target, threshold_table
from .serializers import ErrorSerializer


def _proportion(help_text: str = "") -> serializers.FloatField:
    return serializers.FloatField(
        min_value=0.0, max_value=1.0, allow_null=True, help_text=help_text or None
    )


class PairedProportionSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="The pairs it is over.")
    successes = serializers.IntegerField()
    rate = _proportion("successes / n (null when n is 0).")
    low = _proportion("Wilson 95 % interval.")
    high = _proportion()


class AgreementMatrixSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField())
    live_by_shadow = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="Rows: the live label, columns: the shadow's, in `labels` order.",
    )


class AccuracyDifferenceSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="Pairs with a known expected label.")
    value = serializers.FloatField(help_text="Shadow accuracy - live accuracy.")
    low = serializers.FloatField(help_text="Newcombe's paired 95 % interval.")
    high = serializers.FloatField()
    shadow_only_right = serializers.IntegerField()
    live_only_right = serializers.IntegerField()


class ShadowRowSerializer(serializers.Serializer):
    shadow_model = serializers.CharField()
    cohort = serializers.CharField(allow_blank=True, help_text='The cohort value ("": every pair).')
    n = serializers.IntegerField(help_text="Shadow decisions paired with a live one.")
    agreement = PairedProportionSerializer(help_text="Pairs where both gave the same label.")
    matrix = AgreementMatrixSerializer()
    with_expected_label = serializers.IntegerField()
    live_accuracy = PairedProportionSerializer(allow_null=True)
    shadow_accuracy = PairedProportionSerializer(allow_null=True)
    difference = AccuracyDifferenceSerializer(
        allow_null=True, help_text="Null when no pair has an expected label."
    )


class ShadowAgreementSerializer(serializers.Serializer):
    micro_model = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    group_by = serializers.CharField(allow_null=True)
    results = ShadowRowSerializer(many=True)


def _usd(help_text: str = "") -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, help_text=help_text or None)


class UnitCostsSerializer(serializers.Serializer):
    kept_traces = serializers.IntegerField()
    kept_priced = serializers.IntegerField()
    escalated_traces = serializers.IntegerField()
    escalated_priced = serializers.IntegerField()
    cost_kept = _usd("Mean USD of a priced trace that did not go to the fallback.")
    cost_escalated = _usd("Mean USD of a priced trace that went to the fallback.")
    fallback_cost = _usd("cost_escalated - cost_kept: the extra USD of one escalation.")


class ThresholdStepSerializer(serializers.Serializer):
    threshold = serializers.FloatField(help_text="Escalate when confidence < threshold.")
    kept = serializers.IntegerField()
    correct = serializers.IntegerField()
    accuracy = _proportion("Of the decisions kept.")
    low = _proportion("Wilson 95 % interval.")
    high = _proportion()
    escalated = serializers.IntegerField()
    escalated_share = _proportion()
    cost_per_1000 = _usd("USD per 1,000 decisions at this threshold.")


class ThresholdCohortSerializer(serializers.Serializer):
    cohort = serializers.CharField(allow_blank=True, help_text='"": every decision.')
    n = serializers.IntegerField(help_text="Decisions with a confidence and expected label.")
    thresholds = ThresholdStepSerializer(many=True)
    best = ThresholdStepSerializer(
        allow_null=True, help_text="The lowest-cost threshold meeting the target, or null."
    )
    costs = UnitCostsSerializer()
    cost_basis = serializers.ChoiceField(
        choices=["cohort", "all"],
        help_text="Whose unit costs: the cohort's own, or the micro model's over all.",
    )


class ThresholdsSerializer(serializers.Serializer):
    micro_model = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    group_by = serializers.CharField(allow_null=True)
    target = serializers.FloatField(min_value=0.0, max_value=1.0)
    costs = UnitCostsSerializer()
    cohorts = ThresholdCohortSerializer(many=True)


_PARAMS = ("start", "end", "range", "project", "cohort.<key>", "group_by")

_PARAMETERS = [
    OpenApiParameter("name", str, OpenApiParameter.PATH, description="The live micro model."),
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="Default: end - 24 h."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Default: now."),
    OpenApiParameter(
        "range", str, enum=["1h", "24h", "7d", "30d"], description="Instead of start."
    ),
    OpenApiParameter("project", int, description="One of your projects (default: all)."),
    OpenApiParameter("cohort.<key>", str, description="One cohort filter."),
    OpenApiParameter(
        "group_by",
        str,
        description="A cohort dimension key: one row per value besides the overall row"
        ' (cohort "").',
    ),
]


def _query(request: Request, name: str) -> tuple[metrics.Filters, str | None]:
    try:
        query = parse_metric_query(request.query_params, visible_project_ids(request.user))
    except ProjectNotFound as exc:
        raise exceptions.NotFound(str(exc)) from exc
    except metrics.InvalidQuery as exc:
        raise exceptions.ValidationError({"query": [str(exc)]}) from exc
    dimension = query.group_by
    if dimension is not None and dimension not in {k for k, _ in metrics.cohort_dimensions()}:
        raise exceptions.ValidationError(
            {"group_by": [f"{dimension!r} is not a cohort dimension."]}
        )
    return query.filters.with_(micro_model=name), dimension


def _answer(
    serializer: type[serializers.Serializer],
    filters: metrics.Filters,
    dimension: str | None,
    body: Mapping[str, Any],
) -> Response:
    return Response(
        serializer(
            {
                "micro_model": filters.micro_model,
                "start": filters.start,
                "end": filters.end,
                "group_by": dimension,
                **body,
            }
        ).data
    )


class ShadowAgreementView(APIView):
    query_params = _PARAMS

    @extend_schema(
        operation_id="micro_models_shadow_retrieve",
        summary="Shadow vs live agreement of the candidates mirroring a micro model",
        parameters=_PARAMETERS,
        responses={200: ShadowAgreementSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        filters, dimension = _query(request, name)
        try:
            rows = shadow_agreement(filters, dimension)
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        return _answer(ShadowAgreementSerializer, filters, dimension, {"results": rows})


class ThresholdsView(APIView):
    query_params = (*_PARAMS, "target")

    @extend_schema(
        operation_id="micro_models_thresholds_retrieve",
        summary="Confidence thresholds: accuracy kept, share escalated, cost per 1,000",
        parameters=[
            *_PARAMETERS,
            OpenApiParameter(
                "target",
                str,
                description="Target accuracy of the decisions kept: 0.95 or 95% (default).",
            ),
        ],
        responses={200: ThresholdsSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        filters, dimension = _query(request, name)
        try:
            table = threshold_table(
                filters, parse_target(request.query_params.get("target")), dimension
            )
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        return _answer(ThresholdsSerializer, filters, dimension, table)
