"""The micro model page filtered to one cohort (``cohort.<key>=<value>``): every section
counts that cohort only (known answers computed here from the shadow tests' designed
traffic), the filter shows and can be removed, the sections that compare cohorts say
they are left out, and an unknown dimension is a 400 naming the parameter."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.dashboard.test_shadow_agreement import DESIGN, LIVE, shadowed  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

# Besides DESIGN, the fixture stores one more live decision: a free billing decision
# (expected billing) whose mirrored call shadows another micro model, so pairs nothing.
EXTRA = [("free", "billing", "billing")]  # (tier, live label, expected label)


@pytest.fixture
def client(shadowed) -> Client:  # noqa: F811 (the fixture imported above)
    user = get_user_model().objects.create_user("ana", password="pw-for-tests-1")
    user.projects.add(shadowed.id)
    client = Client()
    client.force_login(user)
    return client


def _decisions(tier: str) -> list[tuple[str, str | None]]:
    """(live label, expected label) of every live decision of ``tier``."""
    out = [(live, exp) for t, live, _, exp, n in DESIGN if t == tier for _ in range(n)]
    return out + [(live, exp) for t, live, exp in EXTRA if t == tier]


@pytest.mark.parametrize("tier", ["enterprise", "free"])
def test_every_section_counts_only_the_cohort(client: Client, tier: str) -> None:
    response = client.get(f"/micro-models/{LIVE}/?range=24h&cohort.user.tier={tier}")
    assert response.status_code == 200
    decisions = _decisions(tier)
    # Routes: route.name is the live label.
    routes = {r["group"]: r["n"] for r in response.context["routes"]}
    assert routes == dict(Counter(live for live, _ in decisions))
    # Labels: decisions per expected label, and those without one.
    quality = response.context["quality"]
    labelled = [(live, exp) for live, exp in decisions if exp]
    expected = Counter(exp for _, exp in labelled)
    # Every label predicted or expected has a row (n: decisions expecting it).
    assert {label["label"]: label["n"] for label in quality["labels"]} == {
        label: expected[label] for label in {x for pair in labelled for x in pair}
    }
    assert quality["without_expected_label"] == sum(1 for _, exp in decisions if not exp)
    # Shadow: one row (no split), the cohort's pairs and agreements.
    pairs = [(live, shadow) for t, live, shadow, _, n in DESIGN if t == tier for _ in range(n)]
    (shadow_row,) = response.context["shadow"]
    assert shadow_row["cohort"] == ""
    assert shadow_row["n"] == len(pairs)
    assert shadow_row["agreement"]["rate"] == pytest.approx(
        sum(1 for live, shadow in pairs if live == shadow) / len(pairs)
    )
    # Thresholds: one row over the cohort's labelled decisions (all at confidence 0.8),
    # its unit costs over the cohort's traces.
    thresholds = response.context["thresholds"]
    (row,) = thresholds["cohorts"]
    assert row["n"] == len(labelled)
    top = row["thresholds"][0]  # t = 0: every decision kept
    assert (top["kept"], top["correct"]) == (
        len(labelled),
        sum(1 for live, exp in labelled if live == exp),
    )
    assert thresholds["costs"]["kept_traces"] == len(decisions)
    # Fallback economics: the cohort's decisions, no split by cohort.
    assert response.context["economics"]["decisions"] == len(decisions)
    assert response.context["economics_by_cohort"] == []
    assert response.context["label_cohort"] == {"dimension": None, "rows": []}
    assert "fallback-by-cohort" not in response.context["figures"]


def test_the_cohort_filter_shows_and_can_be_removed(client: Client) -> None:
    html = client.get(
        f"/micro-models/{LIVE}/?range=24h&cohort.user.tier=enterprise&dimension=user.tier"
    ).content.decode()
    assert '<span class="chip cohort-chip">user.tier = enterprise</span>' in html
    remove = re.search(r'<a class="remove-cohort" href="\?([^"]*)"', html)
    assert remove and remove[1] == "range=24h&amp;dimension=user.tier"
    # The shadow and threshold rows name the cohort, not "all".
    row = r'<td>intent-next</td>\s*<td>{}</td>\s*<td class="num">{}</td>'
    assert re.search(row.format("enterprise", 20), html)
    # Routing advice compares cohorts: the page says it is left out instead of a figure.
    assert 'class="muted routing-not-filtered"' in html
    assert "No traffic in range." not in html
    # Without the filter, the page splits by cohort again and shows routing advice.
    html = client.get(f"/micro-models/{LIVE}/?range=24h&dimension=user.tier").content.decode()
    assert "cohort-chip" not in html and "routing-not-filtered" not in html
    assert re.search(row.format("free", 10), html)


@pytest.mark.parametrize(
    "cohort",
    ["user.tier=enterprise", "user.tier=nobody", "language=en", "prompt.version=v1",
     "task.type=x"],
)  # fmt: skip
def test_every_cohort_dimension_answers_200(client: Client, cohort: str) -> None:
    # A split asked for by another dimension is left out, not a 400.
    url = f"/micro-models/{LIVE}/?range=7d&dimension=language&cohort.{cohort}"
    assert client.get(url).status_code == 200


def test_an_unknown_cohort_dimension_is_a_400_naming_it(client: Client) -> None:
    response = client.get(f"/micro-models/{LIVE}/?range=24h&cohort.colour=red")
    assert response.status_code == 400
    assert "cohort.colour" in response.content.decode()
