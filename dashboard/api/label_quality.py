"""``/api/v1/micro-models/<name>/label-quality/``: one micro model's per label precision,
recall and F1 with intervals and n, split by any cohort dimension (the label-quality
metric)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import metrics
from ..access import visible_project_ids
from ..metric_filters import COHORT_PREFIX, ProjectNotFound, parse_metric_query
from .serializers import ErrorSerializer


def _proportion(help_text: str = "") -> serializers.FloatField:
    return serializers.FloatField(
        min_value=0.0, max_value=1.0, allow_null=True, help_text=help_text or None
    )


class LabelStatsSerializer(serializers.Serializer):
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like a Field attribute
    n = serializers.IntegerField(help_text="Decisions whose expected label is this one.")
    predicted = serializers.IntegerField(help_text="Decisions that predicted this label.")
    true_positives = serializers.IntegerField()
    precision = _proportion()
    precision_low = _proportion("Wilson 95 % interval.")
    precision_high = _proportion()
    precision_n = serializers.IntegerField(help_text="= predicted.")
    recall = _proportion()
    recall_low = _proportion("Wilson 95 % interval.")
    recall_high = _proportion()
    recall_n = serializers.IntegerField(help_text="= n.")
    f1 = _proportion()
    f1_low = _proportion(
        "95 % interval: the Wilson interval of the Jaccard index tp / (tp + fp +"
        " fn) mapped through F1 = 2J / (1 + J).",
    )
    f1_high = _proportion()
    f1_n = serializers.IntegerField(help_text="tp + fp + fn: the decisions F1 is over.")


class ConfusionSerializer(serializers.Serializer):
    labels = serializers.ListField(child=serializers.CharField())
    matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField()),
        help_text="Rows: expected label, columns: predicted label, in `labels` order.",
    )


class LabelQualityGroupSerializer(serializers.Serializer):
    group = serializers.CharField(
        allow_null=True, help_text="The cohort value (null when not grouped)."
    )
    n = serializers.IntegerField(help_text="Decisions with a known expected label.")
    accuracy = _proportion()
    without_expected_label = serializers.IntegerField()
    labels = LabelStatsSerializer(many=True)
    confusion = ConfusionSerializer()


class LabelQualitySerializer(serializers.Serializer):
    micro_model = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    group_by = serializers.CharField(allow_null=True)
    results = LabelQualityGroupSerializer(many=True, source="rows")
    notes = serializers.ListField(child=serializers.CharField())


class MicroModelLabelQualityView(APIView):
    query_params = ("start", "end", "range", "project", "cohort.<key>", "group_by")

    @extend_schema(
        operation_id="micro_models_label_quality",
        summary="One micro model's per label precision, recall and F1 by cohort, with intervals",
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, description="Micro model name."),
            OpenApiParameter("start", OpenApiTypes.DATETIME, description="Default: end - 24 h."),
            OpenApiParameter("end", OpenApiTypes.DATETIME, description="Default: now."),
            OpenApiParameter(
                "range", str, enum=["1h", "24h", "7d", "30d"], description="Instead of start."
            ),
            OpenApiParameter("project", int, description="One of your projects (default: all)."),
            OpenApiParameter(
                "cohort.<key>", str, description="One cohort filter, e.g. `cohort.language=ja`."
            ),
            OpenApiParameter(
                "group_by",
                str,
                description="A cohort dimension, as `cohort.<key>` (e.g. `cohort.user.tier`)"
                " or the bare key; also route or model. Default: one group, the whole traffic.",
            ),
        ],
        responses={
            200: LabelQualitySerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, name: str) -> Response:
        try:
            query = parse_metric_query(request.query_params, visible_project_ids(request.user))
            group_by = query.group_by
            if group_by and group_by.startswith(COHORT_PREFIX):
                group_by = group_by[len(COHORT_PREFIX) :]
            if group_by == "micro_model":
                raise metrics.InvalidQuery("group_by: a cohort dimension, route or model")
            result = metrics.compute(
                "label-quality", query.filters.with_(micro_model=name), group_by
            )
        except ProjectNotFound as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        notes = result.notes or ([] if result.rows else ["no decisions with an expected label"])
        return Response(
            LabelQualitySerializer(
                {
                    "micro_model": name,
                    "start": result.start,
                    "end": result.end,
                    "group_by": group_by,
                    "rows": result.rows,
                    "notes": notes,
                }
            ).data
        )
