"""/api/v1/alert-rules/ and /api/v1/alert-events/: parse, call one service, serialise;
every object scoped to the caller's projects (another project's rule answers 404). Rules
are configuration: people need the admin's model permissions on them, a project API key
manages its own project's rules (``evaluators.permissions``)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import exceptions, generics, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.serializers import BaseSerializer

from evaluators.permissions import ConfigPermissions

from ..access import visible_project_ids
from .models import AlertEvent, AlertRule, AlertState
from .services import RULE_FIELDS, create_alert_rule, delete_alert_rule, update_alert_rule


class NewestFirst(CursorPagination):
    ordering = "-id"
    page_size = 50
    max_page_size = 500
    page_size_query_param = "limit"


class AlertStateSerializer(serializers.ModelSerializer):
    class Meta:
        model = AlertState
        fields = ("split_value", "state", "since", "last_value", "last_n", "last_evaluated_at")


class AlertRuleSerializer(serializers.ModelSerializer):
    project_id = serializers.IntegerField(
        required=False, help_text="One of your projects; defaults to an API key's project."
    )
    states = AlertStateSerializer(many=True, read_only=True)

    class Meta:
        model = AlertRule
        fields = ("id", *RULE_FIELDS, "states", "created_at", "updated_at")
        read_only_fields = ("id", "states", "created_at", "updated_at")


class AlertEventSerializer(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)

    class Meta:
        model = AlertEvent
        fields = (
            "id",
            "rule",
            "rule_name",
            "project_id",
            "split_value",
            "kind",
            "value",
            "n",
            "low",
            "high",
            "threshold",
            "created_at",
        )


def _project_for(request: Any, data: dict[str, Any]) -> int:
    visible = visible_project_ids(request.user)
    project_id = data.get("project_id")
    if project_id is None and len(visible) == 1:
        return visible[0]
    if project_id not in visible:
        raise exceptions.ValidationError({"project_id": ["not one of your projects"]})
    return project_id


class AlertRuleListView(generics.ListCreateAPIView):
    serializer_class = AlertRuleSerializer
    pagination_class = NewestFirst
    permission_classes = [ConfigPermissions]
    config_model = AlertRule
    project_key_writes = True

    def get_queryset(self) -> QuerySet[AlertRule]:
        return AlertRule.objects.filter(
            project_id__in=visible_project_ids(self.request.user)
        ).prefetch_related("states")

    def perform_create(self, serializer: BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        data["project_id"] = _project_for(self.request, data)
        serializer.instance = create_alert_rule(data)


class AlertRuleDetailView(generics.RetrieveUpdateDestroyAPIView):
    serializer_class = AlertRuleSerializer
    permission_classes = [ConfigPermissions]
    config_model = AlertRule
    project_key_writes = True

    def get_queryset(self) -> QuerySet[AlertRule]:
        return AlertRule.objects.filter(
            project_id__in=visible_project_ids(self.request.user)
        ).prefetch_related("states")

    def perform_update(self, serializer: BaseSerializer) -> None:
        data = dict(serializer.validated_data)
        if "project_id" in data:
            data["project_id"] = _project_for(self.request, data)
        assert serializer.instance is not None
        serializer.instance = update_alert_rule(serializer.instance.pk, data)

    def perform_destroy(self, instance: AlertRule) -> None:
        delete_alert_rule(instance.pk)


class AlertEventListView(generics.ListAPIView):
    """Fired / resolved transitions, newest first; ``?rule=<id>`` and ``?kind=`` narrow."""

    serializer_class = AlertEventSerializer
    pagination_class = NewestFirst
    query_params = ("rule", "kind")

    def get_queryset(self) -> QuerySet[AlertEvent]:
        events = AlertEvent.objects.filter(
            project_id__in=visible_project_ids(self.request.user)
        ).select_related("rule")
        rule = self.request.query_params.get("rule")
        if rule is not None:
            if not rule.isdigit():
                raise exceptions.ValidationError({"rule": ["a rule id"]})
            events = events.filter(rule_id=int(rule))
        kind = self.request.query_params.get("kind")
        if kind is not None:
            events = events.filter(kind=kind)
        return events
