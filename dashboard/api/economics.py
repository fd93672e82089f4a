"""``/api/v1/micro-models/<name>/economics/``: what a micro model's rescues cost and what it
saves against sending its traffic always to the fallback model."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import metrics
from ..access import visible_project_ids
from ..metric_filters import ProjectNotFound, parse_metric_query
from ..metrics.economics import fallback_economics
from .metrics import MetricResultSerializer
from .serializers import ErrorSerializer


class EconomicsView(APIView):
    query_params = ("start", "end", "range", "project", "cohort.<key>", "group_by", "interval")

    @extend_schema(
        operation_id="micro_models_economics",
        summary="Fallback economics: rescue rate and cost, always-fallback cost, savings",
        description=(
            "Per group (a cohort value, or all) and optionally per day: `rescues` of"
            " `decisions` (rate with its Wilson 95 % interval), `rescue_cost` and"
            " `cost_per_rescue` (priced rescues: `priced_rescues`), `actual_cost` of the `n`"
            " priced traces, `always_fallback_cost` = n x cost_per_rescue, `savings`,"
            " `savings_per_day`, `savings_per_1k_traces`."
        ),
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, description="Micro model name."),
            OpenApiParameter("start", OpenApiTypes.DATETIME, description="Default: end - 24 h."),
            OpenApiParameter("end", OpenApiTypes.DATETIME, description="Default: now."),
            OpenApiParameter("range", str, enum=["1h", "24h", "7d", "30d"]),
            OpenApiParameter("project", int, description="One of your projects (default: all)."),
            OpenApiParameter("cohort.<key>", str, description="One cohort filter."),
            OpenApiParameter("group_by", str, description="A cohort dimension key."),
            OpenApiParameter("interval", str, enum=["day"], description="A daily series."),
        ],
        responses={200: MetricResultSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request, name: str) -> Response:
        try:
            query = parse_metric_query(request.query_params, visible_project_ids(request.user))
            result = fallback_economics(
                query.filters.with_(micro_model=name), query.group_by, query.interval
            )
        except ProjectNotFound as exc:
            raise exceptions.NotFound(str(exc)) from exc
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        return Response(MetricResultSerializer(result).data)
