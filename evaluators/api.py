"""Configuration through the API: micro models (with their evaluators) and judges.

The views take the caller's visible projects from ``project_ids`` (a function of the
request's user), given when the URLs are wired (``View.as_view(project_ids=...)``), so this
app needs nothing of whoever authenticates. Another project's micro model answers 404.
Judges are shared by every project: a project API key reads them and never changes them.
People need the admin's model permissions (``permissions.py``). A judge's API key is never
stored: the judge names the environment variable, prefixed ``MICROLENS_JUDGE_``, holding it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import QuerySet
from rest_framework import generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.serializers import BaseSerializer

from . import contracts
from .models import EvaluatorConfig, Judge, MicroModel, base_url_problem
from .permissions import ConfigPermissions
from .services import (
    MICRO_MODEL_FIELDS,
    create_micro_model,
    delete_judge,
    delete_micro_model,
    update_micro_model,
)

ProjectIds = Callable[[Any], list[int]]


class ByName(CursorPagination):
    ordering = ("name", "id")
    page_size = 100
    max_page_size = 500
    page_size_query_param = "limit"


class EvaluatorConfigSerializer(serializers.ModelSerializer):
    judge = serializers.SlugRelatedField(
        slug_field="name",
        queryset=Judge.objects.all(),
        allow_null=True,
        required=False,
        help_text="A judge's name; null: the local judge.",
    )

    class Meta:
        model = EvaluatorConfig
        fields = ("evaluator", "enabled", "threshold", "judge")


class MicroModelConfigSerializer(serializers.ModelSerializer):
    project_id = serializers.IntegerField(
        required=False, help_text="One of your projects; defaults to your only one."
    )
    evaluators = EvaluatorConfigSerializer(
        many=True,
        required=False,
        help_text=(
            "Which evaluators run, each with its threshold and judge. On create, omitted:"
            " all three with their default thresholds. On update, given: replaces the set."
        ),
    )

    class Meta:
        model = MicroModel
        fields = (
            "id",
            "project_id",
            *MICRO_MODEL_FIELDS,
            "evaluators",
            "auto_registered",
            "created_at",
        )
        read_only_fields = ("id", "auto_registered", "created_at")
        # The (project, name) uniqueness is checked in validate(), with the project resolved.
        validators: list[Any] = []

    def to_representation(self, instance: MicroModel) -> dict[str, Any]:
        data = super().to_representation(instance)
        order = {name: i for i, name in enumerate(contracts.EVALUATORS)}
        data["evaluators"] = sorted(data["evaluators"], key=lambda e: order[e["evaluator"]])
        return data

    def validate_label_synonyms(self, value: Any) -> dict[str, list[str]]:
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(s, str) for s in v)
            for k, v in value.items()
        ):
            raise serializers.ValidationError(
                'an object of label -> list of synonyms, e.g. {"billing": ["payments"]}'
            )
        return value

    def validate_evaluators(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        names = [item["evaluator"] for item in value]
        if len(set(names)) != len(names):
            raise serializers.ValidationError("each evaluator at most once")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        visible: list[int] = self.context["project_ids"]
        instance: MicroModel | None = self.instance
        if instance is not None:
            if attrs.get("project_id", instance.project_id) != instance.project_id:
                raise serializers.ValidationError({"project_id": "cannot be changed"})
            project_id = instance.project_id
        elif "project_id" in attrs:
            project_id = attrs["project_id"]
            if project_id not in visible:
                raise serializers.ValidationError({"project_id": "not one of your projects"})
        elif len(visible) == 1:
            project_id = attrs["project_id"] = visible[0]
        else:
            raise serializers.ValidationError({"project_id": "required: you have several"})
        name = attrs.get("name", instance.name if instance else None)
        clash = MicroModel.objects.filter(project_id=project_id, name=name)
        if instance is not None:
            clash = clash.exclude(pk=instance.pk)
        if clash.exists():
            raise serializers.ValidationError({"name": "this project has a micro model so named"})
        return attrs


class JudgeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Judge
        fields = (
            "id",
            "name",
            "kind",
            "base_url",
            "model",
            "api_key_env",
            "timeout_seconds",
            "concurrency",
        )
        read_only_fields = ("id",)

    def validate_base_url(self, value: str) -> str:
        problem = base_url_problem(value)
        if problem:
            raise serializers.ValidationError(problem)
        return value


def _no_projects(user: Any) -> list[int]:
    return []


class _Scoped:
    """Micro models of the caller's projects only."""

    # as_view(project_ids=...) sets it on each view instance: a plain function of the user.
    project_ids: ProjectIds = staticmethod(_no_projects)
    request: Any
    config_model = MicroModel
    nested_config = {"evaluators": EvaluatorConfig}
    # A project's key configures that project's micro models.
    project_key_writes = True

    def get_queryset(self) -> QuerySet[MicroModel]:
        visible = self.project_ids(self.request.user)
        return (
            MicroModel.objects.filter(project_id__in=visible)
            .prefetch_related("evaluators__judge")
            .order_by("name", "id")
        )

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()  # type: ignore[misc]
        context["project_ids"] = self.project_ids(self.request.user)
        return context


class MicroModelConfigList(_Scoped, generics.ListCreateAPIView):
    serializer_class = MicroModelConfigSerializer
    permission_classes = [ConfigPermissions]
    pagination_class = ByName

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        evaluators = data.pop("evaluators", None)
        serializer.instance = create_micro_model(data.pop("project_id"), data, evaluators)


class MicroModelConfigDetail(_Scoped, generics.RetrieveUpdateDestroyAPIView):
    serializer_class = MicroModelConfigSerializer
    permission_classes = [ConfigPermissions]

    def perform_update(self, serializer: BaseSerializer) -> None:
        instance = serializer.instance
        # DRF's update() binds the serializer to the micro model it looked up; an explicit
        # check (an assert would vanish under python -O) for any other caller.
        if not isinstance(instance, MicroModel):
            raise TypeError(
                f"perform_update needs a serializer bound to the micro model it updates, "
                f"not {instance!r}"
            )
        data = dict(serializer.validated_data)
        evaluators = data.pop("evaluators", None)
        serializer.instance = update_micro_model(instance.pk, data, evaluators)

    def perform_destroy(self, instance: MicroModel) -> None:
        delete_micro_model(instance.pk)


class JudgeList(generics.ListCreateAPIView):
    serializer_class = JudgeSerializer
    queryset = Judge.objects.order_by("name")
    permission_classes = [ConfigPermissions]
    config_model = Judge
    pagination_class = ByName


class JudgeDetail(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = JudgeSerializer
    queryset = Judge.objects.all()
    permission_classes = [ConfigPermissions]
    config_model = Judge

    def perform_destroy(self, instance: Judge) -> None:
        delete_judge(instance.pk)
