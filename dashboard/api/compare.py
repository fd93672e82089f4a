"""``/api/v1/micro-models/<name>/compare/``: two versions of a micro model side by side,
with the release gate's verdict (what ``microlens gate`` asks for)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import metrics
from ..access import visible_project_ids
from ..metrics.compare import DEFAULT_MIN_N, Side, compare_versions
from .serializers import ErrorSerializer

WINDOW = re.compile(r"^(\d{1,4})([hd])$")
MAX_WINDOW = timedelta(days=400)


def parse_window(raw: str) -> timedelta:
    match = WINDOW.match(raw.strip())
    if match is None:
        raise metrics.InvalidQuery(f"window: a number of hours or days, e.g. 36h or 7d ({raw!r})")
    amount = int(match.group(1))
    window = timedelta(hours=amount) if match.group(2) == "h" else timedelta(days=amount)
    if not timedelta(0) < window <= MAX_WINDOW:
        raise metrics.InvalidQuery("window: more than 0 and at most 400 days")
    return window


def _float(params: Mapping[str, str], name: str, default: float) -> float:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise metrics.InvalidQuery(f"{name}: a number ({raw!r})") from None


class ProportionSerializer(serializers.Serializer):
    k = serializers.IntegerField(help_text="Successes (true positives, or failed verdicts).")
    n = serializers.IntegerField()
    value = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="Wilson 95 % interval.")
    high = serializers.FloatField(allow_null=True)


class ComparisonRowSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["label", "evaluator"])
    name = serializers.CharField(help_text="The label, or the evaluator.")
    metric = serializers.ChoiceField(choices=["precision", "recall", "fail_rate"])
    baseline = ProportionSerializer()
    candidate = ProportionSerializer()
    difference = serializers.FloatField(allow_null=True, help_text="candidate - baseline.")
    low = serializers.FloatField(allow_null=True, help_text="Newcombe 95 % interval.")
    high = serializers.FloatField(allow_null=True)
    higher_is_better = serializers.BooleanField()
    small_n = serializers.BooleanField(help_text="A side has fewer than min_n.")
    status = serializers.ChoiceField(choices=["ok", "regression", "too_little_data"])


class ComparisonSerializer(serializers.Serializer):
    micro_model = serializers.CharField()
    baseline = serializers.CharField()
    candidate = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    max_drop = serializers.FloatField(help_text="The allowed drop, a fraction (0.02 = 2 pp).")
    min_n = serializers.IntegerField()
    verdict = serializers.ChoiceField(choices=["pass", "fail", "insufficient"])
    regressions = serializers.IntegerField()
    rows = ComparisonRowSerializer(many=True)


class CompareView(APIView):
    query_params = ("baseline", "candidate", "window", "project", "max_drop", "min_n")

    @extend_schema(
        operation_id="micro_models_compare",
        summary="Two versions of a micro model side by side, with the release gate's verdict",
        parameters=[
            OpenApiParameter("name", str, OpenApiParameter.PATH, description="Micro model name."),
            OpenApiParameter(
                "baseline", str, required=True, description="key=value, e.g. prompt.version=v1"
            ),
            OpenApiParameter(
                "candidate", str, required=True, description="key=value, e.g. prompt.version=v2"
            ),
            OpenApiParameter("window", str, description="e.g. 36h or 7d (default 7d)."),
            OpenApiParameter("project", int, description="One of your projects (default: all)."),
            OpenApiParameter(
                "max_drop", float, description="Allowed drop, a fraction (default 0.02)."
            ),
            OpenApiParameter(
                "min_n", int, description=f"Least n per side (default {DEFAULT_MIN_N})."
            ),
        ],
        responses={
            200: ComparisonSerializer,
            400: ErrorSerializer,
            401: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request, name: str) -> Response:
        params = request.query_params
        project_ids = visible_project_ids(request.user)
        try:
            baseline = Side.parse(params.get("baseline", ""), "baseline")
            candidate = Side.parse(params.get("candidate", ""), "candidate")
            window = parse_window(params.get("window") or "7d")
            if params.get("project"):
                try:
                    wanted = int(params["project"])
                except ValueError:
                    raise metrics.InvalidQuery("project: a project id") from None
                if wanted not in project_ids:
                    raise exceptions.NotFound("No such project among yours.")
                project_ids = [wanted]
            min_n = int(_float(params, "min_n", DEFAULT_MIN_N))
            end = timezone.now()
            filters = metrics.Filters(tuple(project_ids), end - window, end)
            result = compare_versions(
                filters,
                name,
                baseline,
                candidate,
                max_drop=_float(params, "max_drop", 0.02),
                min_n=min_n,
            )
        except metrics.InvalidQuery as exc:
            raise exceptions.ValidationError({"query": [str(exc)]}) from exc
        return Response(ComparisonSerializer(result).data)
