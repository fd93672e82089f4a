"""``/api/v1/advice/routing/``: per micro model, the cohorts to send to the fallback now and
those that could be taken back, with what each change costs or saves per day."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import metrics
from ..access import visible_project_ids
from ..metric_filters import ProjectNotFound, parse_metric_query
from ..metrics.routing import DEFAULT_MIN_N, DEFAULT_THRESHOLD, routing_advice
from .serializers import ErrorSerializer


class AdviceSerializer(serializers.Serializer):
    dimension = serializers.CharField()
    value = serializers.CharField()
    criterion = serializers.ChoiceField(
        choices=["accuracy_gap", "fail_rate"],
        help_text="What decided the row: the fallback's accuracy gap over the micro model on"
        " escalated decisions (where the fallback's labels are known on at least min_n of"
        " them), else an evaluator's fail rate.",
    )
    evaluator = serializers.CharField(allow_null=True, help_text="Null for accuracy_gap.")
    n = serializers.IntegerField(
        help_text="Evaluations the fail rate is over, or escalated decisions the gap is over."
    )
    effective_n = serializers.FloatField(
        help_text="Kish effective n of the sampling-weighted verdicts (compared with min_n);"
        " n for accuracy_gap."
    )
    fail_rate = serializers.FloatField(allow_null=True, help_text="Null for accuracy_gap.")
    accuracy_gap = serializers.FloatField(
        allow_null=True,
        help_text="Fallback accuracy less micro model accuracy on the same escalated"
        " decisions; null for fail_rate.",
    )
    micro_model_accuracy = serializers.FloatField(allow_null=True)
    fallback_accuracy = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(
        help_text="95 % interval of the criterion: Wilson at the weighted rate's"
        " linearisation n (fail_rate), Newcombe's for paired proportions (accuracy_gap)."
    )
    high = serializers.FloatField()
    usd_per_day = serializers.FloatField(
        allow_null=True,
        help_text="Send: what escalating the rest of the cohort adds per day; take back:"
        " what it saves. Null when no rescue was ever priced.",
    )
    usd_per_day_low = serializers.FloatField(
        allow_null=True, help_text="From the 95 % interval of the cost of a rescue."
    )
    usd_per_day_high = serializers.FloatField(allow_null=True)
    message = serializers.CharField()


class MicroModelAdviceSerializer(serializers.Serializer):
    micro_model = serializers.CharField()
    threshold = serializers.FloatField()
    min_n = serializers.IntegerField()
    send = AdviceSerializer(many=True)
    take_back = AdviceSerializer(many=True)


class RoutingAdviceSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    results = MicroModelAdviceSerializer(many=True)


def _number(raw: str | None, name: str, default: float) -> float:
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise metrics.InvalidQuery(f"{name}: a number ({raw!r})") from None


class RoutingAdviceView(APIView):
    query_params = ("start", "end", "range", "project", "micro_model", "threshold", "min_n")

    @extend_schema(
        operation_id="advice_routing",
        summary="Cohorts to send to the fallback now, and cohorts that could be taken back",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATETIME, description="Default: end - 7 d."),
            OpenApiParameter("end", OpenApiTypes.DATETIME, description="Default: now."),
            OpenApiParameter("range", str, enum=["1h", "24h", "7d", "30d"]),
            OpenApiParameter("project", int, description="One of your projects (default: all)."),
            OpenApiParameter("micro_model", str, description="Default: every one in range."),
            OpenApiParameter(
                "threshold",
                float,
                description=f"Fail rate, or accuracy gap (default {DEFAULT_THRESHOLD}).",
            ),
            OpenApiParameter(
                "min_n", int, description=f"Least effective n (default {DEFAULT_MIN_N})."
            ),
        ],
        responses={
            200: RoutingAdviceSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        params = request.query_params.copy()
        if not (params.get("start") or params.get("end")):
            params.setdefault("range", "7d")
        try:
            query = parse_metric_query(params, visible_project_ids(request.user))
            results = routing_advice(
                query.filters,
                threshold=_number(params.get("threshold"), "threshold", DEFAULT_THRESHOLD),
                min_n=int(_number(params.get("min_n"), "min_n", DEFAULT_MIN_N)),
            )
        except ProjectNotFound as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        data = {"start": query.filters.start, "end": query.filters.end, "results": results}
        return Response(RoutingAdviceSerializer(data).data)
