"""Alert rules in the admin, with a preview of the rule as configured (before saving)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html

from evaluators.contracts import EVALUATORS
from tracestore.queries import list_projects, project_ids_for_user

from ..metrics import InvalidQuery
from .evaluation import ANY_EVALUATOR, preview_rule, suggest_min_n
from .links import traces_path
from .models import AlertDelivery, AlertEvent, AlertRule, AlertState
from .services import RULE_FIELDS
from .units import UnitError, display, to_shown, to_stored

PREVIEW = "_preview"


class AlertRuleForm(forms.ModelForm):
    project_id = forms.TypedChoiceField(coerce=int, label="Project")
    threshold = forms.FloatField(
        help_text="Rates, shares, eval fail rate, label recall / precision / F1 and relative"
        " changes in percent: type 10 for 10 % (0 to 100; a relative change -100 or more)."
        " Latency in ms, cost in USD per 1,000 traces (as the dashboard shows it)."
    )
    evaluator = forms.ChoiceField(
        required=False,
        help_text="Eval fail rate only: one evaluator, or any evaluator (the rule reads the"
        " worst one, so it fires when any one of them crosses the threshold).",
    )
    hysteresis = forms.FloatField(
        initial=0.0,
        help_text="A firing rule resolves only once the value is this far back inside, in the"
        " threshold's unit (percentage points for a percentage).",
    )

    class Meta:
        model = AlertRule
        fields = RULE_FIELDS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rule = self.instance
        names = [*EVALUATORS, *([rule.evaluator] if rule.evaluator else [])]
        field = self.fields["evaluator"]
        if isinstance(field, forms.ChoiceField):
            field.choices = [
                ("", "(none: the metric is not an eval fail rate)"),
                (ANY_EVALUATOR, "any evaluator"),
                *((name, name) for name in dict.fromkeys(names) if name != ANY_EVALUATOR),
            ]
        if rule.pk is not None:
            # The stored fractions are shown in percent, the unit the form takes.
            for name in ("threshold", "hysteresis"):
                self.initial[name] = to_shown(getattr(rule, name), rule.metric, rule.compare_to)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        metric, compare_to = cleaned.get("metric"), cleaned.get("compare_to")
        if metric is None:
            return cleaned
        for name in ("threshold", "hysteresis"):
            if cleaned.get(name) is None:
                continue
            try:
                cleaned[name] = to_stored(
                    cleaned[name], metric, compare_to, margin=name == "hysteresis"
                )
            except UnitError as exc:
                self.add_error(name, str(exc))
        return cleaned

    def is_valid(self) -> bool:
        # The Preview button validates and reads the rule, then answers "not valid" so the
        # admin re-renders the form (with the preview) instead of saving it.
        valid = super().is_valid()
        if valid and PREVIEW in self.data:
            try:
                self.read_now()
            except InvalidQuery as exc:
                self.add_error(None, str(exc))
            return False
        return valid

    def read_now(self) -> None:
        """The rule's current value and n for the chosen filters, and a minimum n from
        current traffic (the preview block of the change form)."""
        now = timezone.now()
        self.preview = preview_rule(self.instance, now)
        self.suggestion = suggest_min_n(self.instance, now)


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    change_form_template = "admin/alerts/alertrule/change_form.html"
    list_display = ("name", "project_id", "metric", "comparator", "shown_threshold", "severity")
    list_filter = ("enabled", "severity", "metric")
    search_fields = ("name", "micro_model", "route")
    fieldsets = (
        (None, {"fields": ("name", "project_id", "enabled", "severity")}),
        (
            "What is measured",
            {
                "fields": (
                    "metric",
                    "micro_model",
                    "route",
                    "evaluator",
                    "label",
                    ("cohort_key", "cohort_value"),
                    "split_by",
                )
            },
        ),
        (
            "When it fires",
            {
                "fields": (
                    ("comparator", "threshold"),
                    "window_seconds",
                    "min_n",
                    "compare_to",
                    "statistical",
                    ("consecutive", "hysteresis"),
                )
            },
        ),
        ("Notifications", {"fields": ("webhook_urls", "email_addresses")}),
    )

    @admin.display(description="threshold", ordering="threshold")
    def shown_threshold(self, rule: AlertRule) -> str:
        return display(rule.threshold, rule.metric, rule.compare_to)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        user = request.user
        projects = list_projects(project_ids_for_user(int(user.pk or 0), user.is_superuser))
        field = form.base_fields["project_id"]
        if isinstance(field, forms.ChoiceField):  # declared so above; narrows the type
            field.choices = [(p.id, p.name) for p in projects]
        return form

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context["adminform"].form
        if obj is not None and request.method == "GET":
            # A saved rule's editor opens with its current value and n.
            try:
                form.read_now()
            except InvalidQuery as exc:
                form.preview_error = str(exc)
        context["preview"] = getattr(form, "preview", None)
        context["suggestion"] = getattr(form, "suggestion", None)
        context["preview_error"] = getattr(form, "preview_error", "")
        context["preview_rule"] = form.instance
        return super().render_change_form(request, context, add, change, form_url, obj)


@admin.register(AlertState)
class AlertStateAdmin(admin.ModelAdmin):
    list_select_related = ("rule",)
    list_display = ("rule", "split_value", "state", "since", "shown_value", "last_n")
    list_filter = ("state",)
    readonly_fields = [f.name for f in AlertState._meta.fields]

    @admin.display(description="last value")
    def shown_value(self, state: AlertState) -> str:
        return display(state.last_value, state.rule.metric, state.rule.compare_to)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AlertEvent)
class AlertEventAdmin(admin.ModelAdmin):
    list_display = (
        "rule",
        "split_value",
        "kind",
        "shown_value",
        "n",
        "shown_threshold",
        "created_at",
        "traces",
    )
    list_select_related = ("rule",)
    list_filter = ("kind",)
    readonly_fields = [f.name for f in AlertEvent._meta.fields]

    @admin.display(description="value")
    def shown_value(self, event: AlertEvent) -> str:
        return display(event.value, event.rule.metric, event.rule.compare_to)

    @admin.display(description="threshold")
    def shown_threshold(self, event: AlertEvent) -> str:
        return display(event.threshold, event.rule.metric, event.rule.compare_to)

    @admin.display(description="traces")
    def traces(self, event: AlertEvent) -> str:
        return format_html(
            '<a href="{}">traces</a>', traces_path(event.rule, event.created_at, event.split_value)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "channel", "target", "status", "attempts", "delivered_at")
    list_filter = ("status", "channel")
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
