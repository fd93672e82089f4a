"""The release gate: /api/v1/micro-models/<name>/compare/ on known-answer traffic, and
``microlens gate`` run as a process against a live server over HTTP with a real key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from dashboard.metrics.compare import newcombe_interval
from microlens.gate import GateError, parse_max_drop
from tracestore.services import create_project, issue_api_key

from .conftest import Tenant
from .gate_data import DESIGN, EVALUATIONS, difference_interval, store_design

ROOT = Path(__file__).resolve().parents[2]
URL = "/api/v1/micro-models/intent-mini/compare/"


# Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10.
@pytest.mark.parametrize(
    ("k1", "n1", "k2", "n2", "low", "high"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
    ],
)
def test_the_difference_interval_is_newcombes_method_10(k1, n1, k2, n2, low, high) -> None:
    interval = newcombe_interval(k1, n1, k2, n2)

    assert interval is not None
    assert round(interval[0], 4) == low
    assert round(interval[1], 4) == high


@pytest.mark.parametrize(("raw", "fraction"), [("2pp", 0.02), ("2%", 0.02), ("0.5", 0.005)])
def test_the_allowed_drop_is_read_in_percentage_points(raw: str, fraction: float) -> None:
    assert parse_max_drop(raw) == pytest.approx(fraction)


def test_an_allowed_drop_that_is_not_points_is_refused() -> None:
    with pytest.raises(GateError, match="percentage points"):
        parse_max_drop("two")


def _expected_rows(baseline: str, candidate: str) -> dict[tuple[str, str], tuple]:
    """(name, metric) -> (baseline k/n, candidate k/n, difference, interval), from DESIGN."""

    def label_counts(version: str) -> dict[tuple[str, str], tuple[int, int]]:
        cells = DESIGN[version]
        labels = {label for pair in cells for label in pair}
        out = {}
        for label in labels:
            tp = cells.get((label, label), 0)
            predicted = sum(n for (_, p), n in cells.items() if p == label)
            actual = sum(n for (e, _), n in cells.items() if e == label)
            out[(label, "precision")] = (tp, predicted)
            out[(label, "recall")] = (tp, actual)
        return out

    base, cand = label_counts(baseline), label_counts(candidate)
    base[("LabelCheck", "fail_rate")] = EVALUATIONS[baseline]
    cand[("LabelCheck", "fail_rate")] = EVALUATIONS[candidate]
    expected = {}
    for key in base:
        (kb, nb), (kc, nc) = base[key], cand[key]
        expected[key] = (
            (kb, nb),
            (kc, nc),
            kc / nc - kb / nb,
            difference_interval(kc, nc, kb, nb),
        )
    return expected


@pytest.fixture
def designed(tenant: Tenant) -> Tenant:
    store_design(tenant.project_id, timezone.now())
    return tenant


def _compare(tenant: Tenant, candidate: str, **extra: str) -> dict:
    params = {"baseline": "prompt.version=v1", "candidate": f"prompt.version={candidate}"}
    response = tenant.client().get(URL, {**params, **extra})
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_a_designed_drop_fails_the_gate_with_the_known_answers(designed: Tenant) -> None:
    result = _compare(designed, "v2", max_drop="0.02")

    expected = _expected_rows("v1", "v2")
    rows = {(row["name"], row["metric"]): row for row in result["rows"]}
    assert set(rows) == set(expected)
    regressions = set()
    for key, (base, cand, difference, (low, high)) in expected.items():
        row = rows[key]
        assert (row["baseline"]["k"], row["baseline"]["n"]) == base
        assert (row["candidate"]["k"], row["candidate"]["n"]) == cand
        assert row["difference"] == pytest.approx(difference, abs=1e-12)
        assert row["low"] == pytest.approx(low, abs=1e-9)
        assert row["high"] == pytest.approx(high, abs=1e-9)
        worse = high < -0.02 if key[1] != "fail_rate" else low > 0.02
        if worse:
            regressions.add(key)
    # The design: billing recall 90 % -> 60 %, tech precision 90/100 -> 90/130, LabelCheck
    # failing 10 % -> 25 %; billing precision (90/100 -> 60/70) and tech recall stay.
    assert regressions == {
        ("billing", "recall"),
        ("tech", "precision"),
        ("LabelCheck", "fail_rate"),
    }
    assert {key for key, row in rows.items() if row["status"] == "regression"} == regressions
    assert rows[("billing", "recall")]["difference"] == pytest.approx(-0.30)
    assert result["verdict"] == "fail"
    assert result["regressions"] == 3


@pytest.mark.django_db
def test_the_same_quality_passes_the_gate(designed: Tenant) -> None:
    result = _compare(designed, "v3")

    assert result["verdict"] == "pass"
    assert {row["status"] for row in result["rows"]} == {"ok"}
    assert {row["difference"] for row in result["rows"]} == {0.0}


@pytest.mark.django_db
def test_a_tiny_candidate_is_too_little_data(designed: Tenant) -> None:
    result = _compare(designed, "v4")

    assert result["verdict"] == "insufficient"
    assert {row["status"] for row in result["rows"]} == {"too_little_data"}
    labelcheck = next(row for row in result["rows"] if row["kind"] == "evaluator")
    assert (labelcheck["candidate"]["k"], labelcheck["candidate"]["n"]) == (0, 5)


@pytest.mark.django_db
def test_a_wide_margin_lets_the_drop_through(designed: Tenant) -> None:
    # Billing recall's interval upper bound is about -17 pp: a 40 pp margin allows it.
    assert _compare(designed, "v2", max_drop="0.40")["verdict"] == "pass"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"baseline": "v1", "candidate": "prompt.version=v2"}, "baseline: key=value"),
        (
            {"baseline": "nope=v1", "candidate": "nope=v2"},
            "'nope' is not a cohort dimension",
        ),
        (
            {"baseline": "prompt.version=v1", "candidate": "user.tier=pro"},
            "same key",
        ),
        (
            {"baseline": "prompt.version=v1", "candidate": "prompt.version=v2", "window": "7w"},
            "window",
        ),
    ],
)
def test_a_bad_comparison_is_refused_with_the_reason(
    tenant: Tenant, params: dict, message: str
) -> None:
    response = tenant.client().get(URL, params)

    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


@pytest.mark.django_db
def test_the_comparison_needs_a_key() -> None:
    from rest_framework.test import APIClient

    response = APIClient().get(URL, {"baseline": "a=1", "candidate": "a=2"})

    assert response.status_code == 401


@pytest.mark.django_db
def test_another_projects_key_sees_nothing_to_compare(designed: Tenant) -> None:
    project = create_project("elsewhere")
    other = Tenant(project.id, issue_api_key(project.id))

    result = _compare(other, "v2")

    assert result["rows"] == []
    assert result["verdict"] == "insufficient"


def _gate(
    url: str, key: str, candidate: str, *extra: str, standalone: bool = False
) -> subprocess.CompletedProcess:
    env = {**os.environ, "CI_MICROLENS_KEY": key}
    # Standalone: the one file, without site-packages (-S), as another project's CI runs it.
    command = (
        [sys.executable, "-S", "microlens/gate.py"]
        if standalone
        else [sys.executable, "-m", "microlens", "gate"]
    )
    return subprocess.run(
        [
            *command,
            "--url",
            url,
            "--api-key-env",
            "CI_MICROLENS_KEY",
            "--micro-model",
            "intent-mini",
            "--baseline",
            "prompt.version=v1",
            "--candidate",
            f"prompt.version={candidate}",
            "--window",
            "1d",
            "--max-drop",
            "2pp",
            *extra,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_gate_command_exits_by_its_verdict_over_http(live_server, transactional_db) -> None:
    project = create_project("ci")
    key = issue_api_key(project.id)
    store_design(project.id, timezone.now())

    failing = _gate(live_server.url, key, "v2")
    assert failing.returncode == 1, failing.stderr
    assert "FAIL: 3 regression(s) beyond the margin" in failing.stdout
    recall = next(line for line in failing.stdout.splitlines() if "recall" in line)
    assert recall.split() == [
        *("billing", "recall", "90.0", "%", "(n=100)", "60.0", "%", "(n=100)"),
        *("-30.0", "pp", "(-40.8", "to", "-18.3)", "REGRESSION"),
    ]

    passing = _gate(live_server.url, key, "v3", "--format", "json")
    assert passing.returncode == 0, passing.stderr
    assert json.loads(passing.stdout)["verdict"] == "pass"

    tiny = _gate(live_server.url, key, "v4", "--format", "markdown", standalone=True)
    assert tiny.returncode == 2, tiny.stderr
    assert tiny.stdout.startswith("**intent-mini: prompt.version=v4 vs prompt.version=v1")
    assert "| LabelCheck | fail rate | 10.0 % (n=200) | 0.0 % (n=5) |" in tiny.stdout

    wrong_key = _gate(live_server.url, "not-a-key", "v2")
    assert wrong_key.returncode == 3
    assert "answered 401: Invalid or revoked API key." in wrong_key.stderr

    unknown = _gate(live_server.url, key, "v2", "--window", "soon")
    assert unknown.returncode == 3
    assert "window: a number of hours or days" in unknown.stderr

    # A usage error is not "too little data" (2).
    usage = _gate(live_server.url, key, "v2", "--format", "html")
    assert usage.returncode == 3
    assert "invalid choice: 'html'" in usage.stderr
