"""Evaluations API: the list of verdicts and late feedback. Thin views over evaluators'
public queries and services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from evaluators.contracts import EVALUATORS
from evaluators.queries import get_evaluation, list_evaluations
from evaluators.services import UnknownTarget, record_feedback
from tracestore.cursors import InvalidCursor

from ..access import ApiKeyPrincipal, visible_project_ids
from .evaluation_serializers import EvaluationSerializer
from .serializers import ErrorSerializer

_ERRORS = {401: ErrorSerializer, 403: ErrorSerializer}
_HEX_TRACE = r"^[0-9a-fA-F]{32}$"
_HEX_SPAN = r"^[0-9a-fA-F]{16}$"


class EvaluationPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page, or null.")
    results = EvaluationSerializer(many=True)


class EvaluationQuerySerializer(serializers.Serializer):
    cursor = serializers.CharField(required=False, help_text="From the previous page's `next`.")
    trace_id = serializers.RegexField(_HEX_TRACE, required=False)
    micro_model = serializers.CharField(required=False)
    evaluator = serializers.ChoiceField(choices=list(EVALUATORS), required=False)
    passed = serializers.BooleanField(required=False, allow_null=True, default=None)
    start = serializers.DateTimeField(required=False, help_text="Spans started at or after.")
    end = serializers.DateTimeField(required=False, help_text="Spans started before.")
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)


class FeedbackInputSerializer(serializers.Serializer):
    trace_id = serializers.RegexField(_HEX_TRACE)
    span_id = serializers.RegexField(
        _HEX_SPAN, required=False, help_text="One span; omit for every decision of the trace."
    )
    expected_label = serializers.CharField(required=False, max_length=500)
    thumbs_up = serializers.BooleanField(required=False, allow_null=True, default=None)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    author = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = (attrs.get("expected_label"), attrs.get("thumbs_up"), attrs.get("comment") or None)
        if all(value is None for value in given):
            raise serializers.ValidationError(
                "give an expected_label, a thumbs_up (true/false) or a comment"
            )
        return attrs


class FeedbackOutcomeSerializer(serializers.Serializer):
    feedback_id = serializers.IntegerField()
    trace_id = serializers.CharField()
    span_id = serializers.CharField(allow_null=True)
    created = serializers.BooleanField()
    evaluations = EvaluationSerializer(many=True, help_text="The LabelCheck results it set.")


class EvaluationListView(APIView):
    query_params = ("cursor", "trace_id", "micro_model", "evaluator", "passed", "start", "end",
                    "limit")  # fmt: skip

    @extend_schema(
        operation_id="evaluations_list",
        summary="Evaluation results, newest span first",
        parameters=[EvaluationQuerySerializer],
        responses={200: EvaluationPageSerializer, 400: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        query = EvaluationQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        try:
            page = list_evaluations(
                visible_project_ids(request.user),
                limit=data["limit"],
                cursor=data.get("cursor"),
                trace_id=data.get("trace_id"),
                micro_model=data.get("micro_model"),
                evaluator=data.get("evaluator"),
                passed=data.get("passed"),
                start=data.get("start"),
                end=data.get("end"),
            )
        except InvalidCursor as exc:
            raise exceptions.ValidationError({"cursor": [str(exc)]}) from exc
        next_url = (
            replace_query_param(request.build_absolute_uri(), "cursor", page.next_cursor)
            if page.next_cursor
            else None
        )
        body = {"next": next_url, "results": page.results}
        return Response(EvaluationPageSerializer(body).data)


class EvaluationDetailView(APIView):
    @extend_schema(
        operation_id="evaluations_retrieve",
        summary="One evaluation result",
        responses={200: EvaluationSerializer, 404: ErrorSerializer, **_ERRORS},
    )
    def get(self, request: Request, evaluation_id: int) -> Response:
        view = get_evaluation(visible_project_ids(request.user), evaluation_id)
        if view is None:
            raise exceptions.NotFound("No evaluation with this id in your projects.")
        return Response(EvaluationSerializer(view).data)


class FeedbackView(APIView):
    @extend_schema(
        operation_id="feedback_create",
        summary="Post late ground truth for a trace or a span",
        request=FeedbackInputSerializer,
        responses={
            200: FeedbackOutcomeSerializer,
            201: FeedbackOutcomeSerializer,
            400: ErrorSerializer,
            404: ErrorSerializer,
            **_ERRORS,
        },
    )
    def post(self, request: Request) -> Response:
        given = FeedbackInputSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        try:
            outcome = record_feedback(
                visible_project_ids(request.user),
                trace_id=data["trace_id"],
                span_id=data.get("span_id"),
                expected_label=data.get("expected_label"),
                thumbs_up=data.get("thumbs_up"),
                comment=data["comment"],
                author=data["author"] or _who(request.user),
            )
        except UnknownTarget as exc:
            raise exceptions.NotFound(str(exc)) from exc
        code = status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK
        return Response(FeedbackOutcomeSerializer(outcome).data, status=code)


def _who(user: Any) -> str:
    if isinstance(user, ApiKeyPrincipal):
        return f"api key of {user.project.name}"
    return getattr(user, "username", "") or ""
