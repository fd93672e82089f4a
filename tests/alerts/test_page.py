"""The alerts page (rules, state, history, the value-over-time chart) and the banner of
firing alerts on every dashboard page, for the viewer's projects only."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from dashboard.alerts.services import evaluate_alert_rule
from tests.dashboard.metric_data import NOW
from tracestore.services import create_project

from .conftest import decisions, rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_client(project) -> Client:
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(project.id)
    client = Client()
    client.force_login(user)
    return client


def test_the_page_lists_rules_state_history_and_the_chart(project, member_client) -> None:
    decisions(project.id, 40, fallbacks=10)
    r = rule(project.id, name="intent-mini fallbacks")
    evaluate_alert_rule(r.id, NOW - timedelta(minutes=1))
    evaluate_alert_rule(r.id, NOW)

    response = member_client.get("/alerts/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "intent-mini fallbacks" in html
    assert "<td><strong>firing</strong></td>" in html
    assert "<td>fired</td>" in html
    figure = response.context["figures"][f"alert-rule-{r.id}"]
    names = [trace.get("name") for trace in figure["data"]]
    assert names == ["value 95 % interval", "value", "threshold"]
    assert figure["data"][1]["y"] == [25.0, 25.0]
    assert figure["data"][2]["y"] == [10.0, 10.0]
    assert "<td>above 10 %</td>" in html
    assert "<td>25 % (40)</td>" in html


def test_the_banner_lists_firing_alerts_of_the_viewers_projects(project, member_client) -> None:
    other = create_project("elsewhere")
    decisions(project.id, 40, fallbacks=10)
    decisions(other.id, 40, fallbacks=10, first=100)
    mine = rule(project.id, name="mine is firing")
    theirs = rule(other.id, name="theirs is firing")
    evaluate_alert_rule(mine.id, NOW)
    evaluate_alert_rule(theirs.id, NOW)

    page = member_client.get("/overview/").content.decode()
    firing = member_client.get("/alerts/firing/").json()["firing"]

    assert 'id="alerts-banner"' in page and 'data-src="/alerts/firing/"' in page
    assert [(f["rule"], f["shown"], f["n"]) for f in firing] == [("mine is firing", "25 %", 40)]


@pytest.mark.parametrize("path", ["/", "/overview/", "/cohorts/", "/alerts/"])
def test_every_page_links_the_alerts_page_in_its_navigation(member_client, path) -> None:
    html = member_client.get(path).content.decode()

    nav = html[html.index('<nav class="nav">') : html.index("</nav>")]
    assert '<a href="/alerts/">Alerts</a>' in nav


def test_nothing_fires_nothing_in_the_banner(project, member_client) -> None:
    decisions(project.id, 40, fallbacks=1)
    r = rule(project.id)
    evaluate_alert_rule(r.id, NOW)

    assert member_client.get("/alerts/firing/").json() == {"firing": []}
    assert "No alert has fired yet." in member_client.get("/alerts/").content.decode()


def test_the_banner_is_not_drawn_for_anonymous_visitors(client) -> None:
    assert "alerts-banner" not in client.get("/login/").content.decode()
    assert client.get("/alerts/firing/").status_code == 302


def test_rules_and_events_link_to_the_rule_and_its_traces(project) -> None:
    staff = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(staff)
    decisions(project.id, 40, fallbacks=10, tier="enterprise")
    r = rule(project.id, name="enterprise fallbacks", split_by="user.tier")
    evaluate_alert_rule(r.id, NOW)

    html = client.get("/alerts/").content.decode()

    assert f'<a href="/admin/alerts/alertrule/{r.id}/change/">enterprise fallbacks</a>' in html
    start = quote((NOW - timedelta(hours=1)).isoformat())
    event_traces = (
        f"/?start={start}&amp;end={quote(NOW.isoformat())}&amp;micro_model=intent-mini"
        "&amp;cohort.user.tier=enterprise&amp;fallback=1"
    )
    assert f'<a class="alert-traces" href="{event_traces}">traces</a>' in html
