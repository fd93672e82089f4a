"""The alert rule admin: a logged-in superuser previews a rule (value, n, interval) before
saving it, and gets clear errors for a rule the metrics cannot answer."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from dashboard.alerts.models import AlertRule, AlertState
from dashboard.alerts.services import evaluate_alert_rule
from dashboard.models import ModelPrice
from tests.dashboard.metric_data import NOW

from .conftest import decisions, rule

pytestmark = pytest.mark.django_db

ADD = "/admin/alerts/alertrule/add/"


@pytest.fixture
def admin_client() -> Client:
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client


def _form(project_id: int, **changes: str) -> dict[str, str]:
    data = {
        "name": "fallbacks of intent-mini",
        "project_id": str(project_id),
        "enabled": "on",
        "severity": "warning",
        "metric": "fallback-rate",
        "micro_model": "intent-mini",
        "comparator": "above",
        "threshold": "10",
        "window_seconds": "3600",
        "min_n": "10",
        "compare_to": "",
        "consecutive": "1",
        "hysteresis": "0",
        "webhook_urls": "",
        "email_addresses": "oncall@example.com",
    }
    data.update(changes)
    return data


def test_the_preview_shows_value_n_and_interval_without_saving(admin_client, project) -> None:
    decisions(project.id, 40, fallbacks=10, at=timezone.now() - timedelta(minutes=5))

    response = admin_client.post(ADD, {**_form(project.id), "_preview": "Preview"})

    assert response.status_code == 200
    rows = response.context["preview"]
    assert [(r.reading.value, r.reading.n, r.breached) for r in rows] == [(0.25, 40, True)]
    assert 0.14 < rows[0].reading.low < 0.25 < rows[0].reading.high < 0.41
    html = response.content.decode()
    assert "<td>25 %</td>" in html and "yes: would fire" in html
    assert AlertRule.objects.count() == 0


def test_the_preview_splits_by_cohort_value(admin_client, project) -> None:
    now = timezone.now()
    decisions(project.id, 20, fallbacks=10, tier="enterprise", at=now - timedelta(minutes=5))
    decisions(project.id, 20, tier="free", at=now - timedelta(minutes=5), first=100)

    response = admin_client.post(
        ADD, {**_form(project.id, split_by="user.tier"), "_preview": "Preview"}
    )

    rows = {
        r.reading.split_value: (r.reading.value, r.reading.n) for r in response.context["preview"]
    }
    assert rows == {"enterprise": (0.5, 20), "free": (0.0, 20)}


def test_saving_the_form_creates_the_rule(admin_client, project) -> None:
    response = admin_client.post(ADD, {**_form(project.id), "_save": "Save"})

    assert response.status_code == 302
    rule = AlertRule.objects.get()
    assert (rule.metric, rule.threshold, rule.email_addresses) == (
        "fallback-rate",
        0.1,
        ["oncall@example.com"],
    )


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"metric": "route-share"}, "route", "route share needs the route"),
        ({"window_seconds": "60"}, "window_seconds", "greater than or equal to 300"),
        ({"split_by": "shoe.size"}, "split_by", "unknown cohort dimension"),
        (
            {"metric": "latency-p90", "statistical": "on"},
            "statistical",
            "statistical mode needs a proportion",
        ),
        (
            {"webhook_urls": "http://169.254.169.254/latest"},
            "webhook_urls",
            "private, loopback or link-local",
        ),
    ],
)
def test_a_rule_the_metrics_cannot_answer_is_refused_with_a_clear_error(
    admin_client, project, changes, field, message
) -> None:
    response = admin_client.post(ADD, {**_form(project.id, **changes), "_preview": "Preview"})

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert AlertRule.objects.count() == 0


def test_the_change_page_of_a_saved_rule_renders_with_its_preview_button(
    admin_client, project
) -> None:
    saved = rule(project.id, name="saved rule")

    response = admin_client.get(f"/admin/alerts/alertrule/{saved.id}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_preview"' in html and "saved rule" in html
    # No traffic: the editor still opens with the current reading (no data, n 0).
    assert [(r.reading.value, r.reading.n) for r in response.context["preview"]] == [(None, 0)]
    assert "No traffic for these filters in the last 7 days" in html


@pytest.mark.parametrize(("fallbacks", "state"), [(6, "firing"), (4, "ok")])
def test_a_threshold_typed_as_10_means_10_percent(admin_client, project, fallbacks, state) -> None:
    # 6 of 50 is 12 %, 4 of 50 is 8 %.
    decisions(project.id, 50, fallbacks=fallbacks)
    response = admin_client.post(ADD, {**_form(project.id), "_save": "Save"})
    assert response.status_code == 302
    saved = AlertRule.objects.get()
    assert saved.threshold == 0.1

    evaluate_alert_rule(saved.id, NOW)

    assert AlertState.objects.get(rule=saved).state == state


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"threshold": "120"}, "threshold", "a percentage from 0 to 100"),
        ({"threshold": "-1"}, "threshold", "a percentage from 0 to 100"),
        ({"hysteresis": "101"}, "hysteresis", "a percentage from 0 to 100"),
        ({"compare_to": "week", "threshold": "-150"}, "threshold", "-100 % or more"),
    ],
)
def test_a_percentage_outside_its_range_is_refused(
    admin_client, project, changes, field, message
) -> None:
    response = admin_client.post(ADD, {**_form(project.id, **changes), "_save": "Save"})

    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert AlertRule.objects.count() == 0


def test_latency_and_relative_change_thresholds_keep_their_units(admin_client, project) -> None:
    admin_client.post(
        ADD, {**_form(project.id, metric="latency-p90", threshold="250"), "_save": "Save"}
    )
    admin_client.post(
        ADD,
        {**_form(project.id, name="up 30 %", compare_to="week", threshold="30"), "_save": "Save"},
    )

    assert dict(AlertRule.objects.values_list("name", "threshold")) == {
        "fallbacks of intent-mini": 250.0,
        "up 30 %": 0.3,
    }


def test_the_change_form_shows_a_stored_rate_in_percent(admin_client, project) -> None:
    saved = rule(project.id, threshold=0.125, hysteresis=0.02)

    response = admin_client.get(f"/admin/alerts/alertrule/{saved.id}/change/")

    form = response.context["adminform"].form
    assert (form["threshold"].value(), form["hysteresis"].value()) == (12.5, 2.0)
    assert 'name="threshold" value="12.5"' in response.content.decode()


def test_the_editor_shows_the_current_value_and_n_and_suggests_a_minimum_n(
    admin_client, project
) -> None:
    # 280 decisions in the last 7 days: a 1-day window holds 40 on average.
    decisions(project.id, 280, fallbacks=28, at=timezone.now() - timedelta(minutes=5))
    saved = rule(project.id, window_seconds=86400, threshold=0.05)

    response = admin_client.get(f"/admin/alerts/alertrule/{saved.id}/change/")

    html = response.content.decode()
    [row] = response.context["preview"]
    assert (row.reading.value, row.reading.n, row.breached) == (0.1, 280, True)
    assert "<td>10 %</td>" in html and "<td>280</td>" in html
    assert response.context["suggestion"].min_n == 10
    assert "Suggested minimum n: <strong>10</strong> (a window of this length held 40" in html


def test_too_little_traffic_suggests_no_minimum_n(admin_client, project) -> None:
    decisions(project.id, 40, fallbacks=10, at=timezone.now() - timedelta(minutes=5))

    response = admin_client.post(ADD, {**_form(project.id), "_preview": "Preview"})

    assert response.context["suggestion"].min_n is None
    assert (
        "Too little traffic to suggest a minimum n: a window of this length held 0.2"
        in response.content.decode()
    )


def test_any_evaluator_is_a_choice_of_the_form(admin_client, project) -> None:
    html = admin_client.get(ADD).content.decode()
    assert '<option value="*">any evaluator</option>' in html

    response = admin_client.post(
        ADD, {**_form(project.id, metric="eval-fail-rate", evaluator="*"), "_save": "Save"}
    )

    assert response.status_code == 302
    assert AlertRule.objects.values_list("metric", "evaluator").get() == ("eval-fail-rate", "*")


def test_the_admin_lists_show_rates_in_percent_and_link_events_to_traces(
    admin_client, project
) -> None:
    decisions(project.id, 40, fallbacks=10)
    saved = rule(project.id, name="fallbacks")
    evaluate_alert_rule(saved.id, NOW)

    rules = admin_client.get("/admin/alerts/alertrule/").content.decode()
    states = admin_client.get("/admin/alerts/alertstate/").content.decode()
    events = admin_client.get("/admin/alerts/alertevent/").content.decode()

    assert '<td class="field-shown_threshold">10 %</td>' in rules
    assert '<td class="field-shown_value">25 %</td>' in states
    assert '<td class="field-shown_value">25 %</td>' in events
    assert '<td class="field-shown_threshold">10 %</td>' in events
    assert '<td class="field-traces"><a href="/?start=' in events
    assert "micro_model=intent-mini&amp;fallback=1" in events


def _free_micro_model_and_a_4_dollar_fallback() -> None:
    # Each escalated trace costs 800 input tokens x 5 USD per million = 0.004 USD, i.e.
    # 4 USD per 1,000 traces; the micro model's own tokens cost nothing.
    for pattern, price in (("intent-mini*", "0"), ("gpt-large", "5.00")):
        ModelPrice.objects.create(
            model_pattern=pattern,
            input_per_million=Decimal(price),
            output_per_million=Decimal("0"),
            effective_from=date(2026, 1, 1),
        )


def test_a_cost_rule_is_typed_and_shown_in_usd_per_1000_traces(admin_client, project) -> None:
    _free_micro_model_and_a_4_dollar_fallback()
    # 10 of 40 traces escalated: 0.001 USD per trace, 1 USD per 1,000 traces.
    decisions(project.id, 40, fallbacks=10)
    form = _form(project.id, name="cost", metric="cost-per-trace-mean", threshold="0.5")

    response = admin_client.post(ADD, {**form, "_save": "Save"})

    assert response.status_code == 302
    saved = AlertRule.objects.get()
    assert saved.threshold == pytest.approx(0.0005)
    evaluate_alert_rule(saved.id, NOW)
    assert AlertState.objects.get(rule=saved).state == "firing"
    rules = admin_client.get("/admin/alerts/alertrule/").content.decode()
    events = admin_client.get("/admin/alerts/alertevent/").content.decode()
    assert '<td class="field-shown_threshold">0.5 USD per 1,000 traces</td>' in rules
    assert '<td class="field-shown_value">1 USD per 1,000 traces</td>' in events
    change = admin_client.get(f"/admin/alerts/alertrule/{saved.id}/change/")
    assert change.context["adminform"].form["threshold"].value() == 0.5
