"""``/api/v1/metrics/<name>/``: parse the query, call the metrics module, return JSON."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import metrics
from ..access import visible_project_ids
from ..metric_filters import QUERY_PARAMS, RANGE_PARAMS, ProjectNotFound, parse_metric_query
from .serializers import ErrorSerializer


class MetricResultSerializer(serializers.Serializer):
    metric = serializers.CharField()
    start = serializers.DateTimeField(help_text="Range start (inclusive), exactly as asked.")
    end = serializers.DateTimeField(help_text="Range end (exclusive), exactly as asked.")
    group_by = serializers.CharField(allow_null=True)
    interval = serializers.CharField(allow_null=True)
    results = serializers.ListField(
        source="rows",
        child=serializers.DictField(child=serializers.JSONField()),
        help_text="One object per group (and time bucket); every one carries its n."
        " eval-fail-rate rows also carry `evaluated` (= n, the verdicts the rate is over) and"
        " `pending` (evaluations scheduled for spans in the range that have not run yet);"
        " their `rate`, `low` and `high` weigh each verdict by 1 / its sampling probability"
        " (the whole traffic's rate), with `effective_n` (Kish) and the unweighted"
        " `raw_rate`, `raw_low`, `raw_high`."
        " cost-per-trace rows also carry `unpriced_models` (models that left traces of the"
        " row without a price: those count in `uncosted_traces`, not in the cost figures)"
        " and each cost per 1,000 traces (`mean_usd_per_1000_traces`, ...).",
    )
    notes = serializers.ListField(child=serializers.CharField())


_PARAMETERS = [
    OpenApiParameter(
        "name",
        str,
        OpenApiParameter.PATH,
        enum=sorted(metrics.METRICS),
        description="The metric.",
    ),
    OpenApiParameter("start", OpenApiTypes.DATETIME, description="Default: end - 24 h."),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Default: now."),
    OpenApiParameter(
        "range", str, enum=["1h", "24h", "7d", "30d"], description="Instead of start."
    ),
    OpenApiParameter("project", int, description="One of your projects (default: all)."),
    OpenApiParameter("micro_model", str),
    OpenApiParameter("route", str),
    OpenApiParameter("model", str, description="Model (version) name."),
    OpenApiParameter(
        "cohort.<key>",
        str,
        description=(
            "One cohort filter, e.g. `cohort.user.tier=enterprise`; two dimensions at once"
            " (or two values of one) answer 400."
        ),
    ),
    OpenApiParameter(
        "group_by", str, description="micro_model, route, model or a cohort dimension key."
    ),
    OpenApiParameter("interval", str, enum=["hour", "day"], description="A time series."),
]


class MetricView(APIView):
    query_params = QUERY_PARAMS

    @extend_schema(
        operation_id="metrics_retrieve",
        summary="One metric over a time range, filtered and grouped",
        parameters=_PARAMETERS,
        responses={
            200: MetricResultSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            403: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, name: str) -> Response:
        if name not in metrics.METRICS:
            raise exceptions.NotFound(f"No metric {name!r}: one of {sorted(metrics.METRICS)}.")
        try:
            query = parse_metric_query(request.query_params, visible_project_ids(request.user))
            result = metrics.compute(name, query.filters, query.group_by, query.interval)
        except ProjectNotFound as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        return Response(MetricResultSerializer(result).data)


class MicroModelSerializer(serializers.Serializer):
    name = serializers.CharField()
    n = serializers.IntegerField(help_text="Decisions in range.")
    fallbacks = serializers.IntegerField()
    fallback_rate = serializers.FloatField()
    errors = serializers.IntegerField()  # type: ignore[assignment]  # a field named like a Field attribute
    routes = serializers.ListField(child=serializers.CharField())
    models = serializers.ListField(child=serializers.CharField())
    last_seen_bucket = serializers.DateTimeField(
        help_text="Start of the last hour or day bucket it was seen in."
    )


class MicroModelListSerializer(serializers.Serializer):
    results = MicroModelSerializer(many=True)


_RANGE_PARAMETERS = [p for p in _PARAMETERS if p.name in ("start", "end", "range", "project")]


def _micro_model_rows(request: Request, name: str | None) -> list[dict]:
    params = request.query_params.copy()
    if not (params.get("start") or params.get("end")):
        params.setdefault("range", "30d")
    try:
        query = parse_metric_query(params, visible_project_ids(request.user))
    except ProjectNotFound as exc:
        raise exceptions.NotFound(str(exc)) from exc
    except metrics.InvalidQuery as exc:
        raise exceptions.ValidationError({"query": [str(exc)]}) from exc
    return metrics.micro_models(query.filters, name)


class MicroModelListView(APIView):
    query_params = RANGE_PARAMS

    @extend_schema(
        operation_id="micro_models_list",
        summary="Micro models seen in your projects' traffic (default: the last 30 days)",
        parameters=_RANGE_PARAMETERS,
        responses={200: MicroModelListSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        rows = _micro_model_rows(request, None)
        return Response(MicroModelListSerializer({"results": rows}).data)


class MicroModelDetailView(APIView):
    query_params = RANGE_PARAMS

    @extend_schema(
        operation_id="micro_models_retrieve",
        summary="One micro model's traffic in range",
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, description="Micro model name."),
            *_RANGE_PARAMETERS,
        ],
        responses={200: MicroModelSerializer, 401: ErrorSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        rows = _micro_model_rows(request, name)
        if not rows:
            raise exceptions.NotFound("No micro model with this name in your projects' traffic.")
        return Response(MicroModelSerializer(rows[0]).data)
