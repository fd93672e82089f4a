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
from .units import UnitError, to_shown, to_stored, unit_of

UNIT_HELP = (
    "'percent' for rates, shares, eval fail rate, label recall / precision / F1 and relative"
    " changes (compare_to); 'ms' for latency; 'USD per 1,000 traces' for cost (4.2 ="
    " 0.0042 USD a trace, as the dashboard shows cost)."
)


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
    threshold = serializers.FloatField(
        help_text="In the rule's `unit`: a percentage is typed as percent (10 = 10 %), 0 to 100"
        " for a rate, share or label quality, -100 or more for a relative change (30 = +30 %)."
    )
    hysteresis = serializers.FloatField(
        required=False,
        help_text="How far back inside the threshold a firing rule must come to resolve, in"
        " the rule's `unit` (percentage points for a percentage, 0 to 100).",
    )
    evaluator = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=100,
        help_text="Eval fail rate only: an evaluator (label_check, groundedness,"
        " task_completion), or `*` for any evaluator (the worst one's fail rate).",
    )
    unit = serializers.SerializerMethodField(help_text=UNIT_HELP)
    states = AlertStateSerializer(many=True, read_only=True)

    class Meta:
        model = AlertRule
        fields = ("id", *RULE_FIELDS, "unit", "states", "created_at", "updated_at")
        read_only_fields = ("id", "unit", "states", "created_at", "updated_at")

    def get_unit(self, rule: AlertRule) -> str:
        return unit_of(rule.metric, rule.compare_to)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Percent in, fractions stored: the unit follows the rule as it will be saved.
        current = self.instance
        metric = attrs.get("metric", getattr(current, "metric", ""))
        compare_to = attrs.get("compare_to", getattr(current, "compare_to", ""))
        unit = unit_of(metric, compare_to)
        if (
            current is not None
            and "threshold" not in attrs
            and unit != unit_of(current.metric, current.compare_to)
        ):
            raise exceptions.ValidationError(
                {"threshold": [f"give the threshold again: the rule's unit is now {unit}"]}
            )
        errors: dict[str, list[str]] = {}
        for name in ("threshold", "hysteresis"):
            if name in attrs:
                try:
                    attrs[name] = to_stored(
                        attrs[name], metric, compare_to, margin=name == "hysteresis"
                    )
                except UnitError as exc:
                    errors[name] = [str(exc)]
        if errors:
            raise exceptions.ValidationError(errors)
        return attrs

    def to_representation(self, instance: AlertRule) -> dict[str, Any]:
        data = super().to_representation(instance)
        for name in ("threshold", "hysteresis"):
            data[name] = to_shown(data[name], instance.metric, instance.compare_to)
        for state in data["states"]:
            state["last_value"] = to_shown(
                state["last_value"], instance.metric, instance.compare_to
            )
        return data


class AlertEventSerializer(serializers.ModelSerializer):
    """Value, interval and threshold in the rule's ``unit`` (percent for a percentage)."""

    rule_name = serializers.CharField(source="rule.name", read_only=True)
    unit = serializers.SerializerMethodField(help_text=UNIT_HELP)

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
            "unit",
            "created_at",
        )

    def get_unit(self, event: AlertEvent) -> str:
        return unit_of(event.rule.metric, event.rule.compare_to)

    def to_representation(self, instance: AlertEvent) -> dict[str, Any]:
        data = super().to_representation(instance)
        rule = instance.rule
        for name in ("value", "low", "high", "threshold"):
            data[name] = to_shown(data[name], rule.metric, rule.compare_to)
        return data


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
        instance = serializer.instance
        # DRF's update() binds the serializer to the rule it looked up; an explicit check
        # (an assert would vanish under python -O) for any other caller.
        if not isinstance(instance, AlertRule):
            raise TypeError(
                f"perform_update needs a serializer bound to the alert rule it updates, "
                f"not {instance!r}"
            )
        serializer.instance = update_alert_rule(instance.pk, data)

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
