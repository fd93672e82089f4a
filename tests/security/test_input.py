"""Input: no query parameter, path or body answers 5xx. Bad values answer 400 with a message
naming the parameter, unknown query parameters on the API answer 400 instead of being
ignored, and the API's 404s are JSON. A property-based test (hypothesis) sends arbitrary
values for every documented parameter of every page and endpoint, on a database holding
traffic, and asserts no 5xx."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard import metrics
from dashboard.alerts.services import RULE_FIELDS
from dashboard.metrics.refresh import fold_changes
from evaluators.services import MICRO_MODEL_FIELDS
from tests.dashboard.metric_data import NOW, build_trace
from tracestore.services import create_project, store_spans

pytestmark = pytest.mark.django_db

TRACE_ID = "0" * 31 + "1"
METRIC = ("start", "end", "range", "project", "micro_model", "route", "model",
          "cohort.user.tier", "cohort.language", "group_by", "interval")  # fmt: skip
RANGE = ("start", "end", "range", "project")
TRACE_SEARCH = ("service", "before", "micro_model", "route", "model", "label", "fallback",
                "status", "min_ms", "min_cost", "failed", "range", "start", "end", "project",
                "cohort.user.tier")  # fmt: skip

# (path, documented query parameters): every API list and detail endpoint, every page.
API_GETS = [
    ("/api/v1/traces/", ("cursor", "service", "limit")),
    ("/api/v1/traces/{trace}/", ()),
    ("/api/v1/traces/{trace}/spans/", ()),
    ("/api/v1/traces/{trace}/spans/{span}/", ()),
    (
        "/api/v1/spans/",
        (*METRIC[:-2], "cursor", "trace_id", "label", "fallback", "error", "limit"),
    ),
    (
        "/api/v1/evaluations/",
        ("cursor", "trace_id", "micro_model", "evaluator", "passed", "start", "end", "limit"),
    ),
    ("/api/v1/evaluations/{int}/", ()),
    *((f"/api/v1/metrics/{name}/", METRIC) for name in sorted(metrics.METRICS)),
    ("/api/v1/metrics/{text}/", METRIC),
    ("/api/v1/micro-models/", RANGE),
    ("/api/v1/micro-models/{text}/", RANGE),
    ("/api/v1/micro-models/{text}/label-quality/", (*RANGE, "cohort.user.tier", "group_by")),
    (
        "/api/v1/micro-models/{text}/economics/",
        (*RANGE, "cohort.user.tier", "group_by", "interval"),
    ),
    ("/api/v1/micro-models/{text}/shadow/", (*RANGE, "cohort.user.tier", "group_by")),
    ("/api/v1/micro-models/{text}/thresholds/", (*RANGE, "cohort.user.tier", "group_by", "target")),
    (
        "/api/v1/micro-models/{text}/compare/",
        ("project", "baseline", "candidate", "max_drop", "min_n", "window"),
    ),
    ("/api/v1/advice/routing/", (*RANGE, "micro_model", "min_n", "threshold")),
    ("/api/v1/config/micro-models/", ("cursor", "limit")),
    ("/api/v1/config/micro-models/{int}/", ()),
    ("/api/v1/config/judges/", ("cursor", "limit")),
    ("/api/v1/config/judges/{int}/", ()),
    ("/api/v1/alert-rules/", ("cursor", "limit")),
    ("/api/v1/alert-rules/{int}/", ()),
    ("/api/v1/alert-events/", ("rule", "kind", "cursor", "limit")),
]
PAGES = [
    ("/", TRACE_SEARCH),
    ("/traces/{trace}/", ()),
    ("/overview/", METRIC),
    ("/micro-models/intent-mini/", (*METRIC, "dimension")),
    ("/micro-models/{text}/", (*METRIC, "dimension")),
    ("/cohorts/", (*METRIC, "dimension")),
    ("/alerts/", ()),
    ("/alerts/firing/", ()),
]
API_POSTS: list[tuple[str, tuple[str, ...]]] = [
    (
        "/api/v1/feedback/",
        ("trace_id", "span_id", "expected_label", "thumbs_up", "comment", "author"),
    ),
    ("/api/v1/config/micro-models/", (*MICRO_MODEL_FIELDS, "project_id", "evaluators")),
    (
        "/api/v1/config/judges/",
        ("name", "kind", "base_url", "model", "api_key_env", "timeout_seconds", "concurrency"),
    ),
    ("/api/v1/alert-rules/", ("project_id", *RULE_FIELDS)),
]

TRICKY = [
    "", " ", "2026-13-45", "2026-02-30", "2026-01-01T25:61:00", "2026-01-01T00:00:00+25:00",
    "9999-12-31T23:59:59", "0001-01-01", "10000-01-01", "-1", "0", "1", "2", "1e309", "nan",
    "inf", "-inf", "99999999999999999999999", "true", "false", "yes", "null", "[]", "{}",
    "'; drop table x; --", "%", "%00", "..", "../../etc/passwd", "hour", "day", "1h", "30d",
    "route", "micro_model", "user.tier", "task_completion", "fired", "billing",
    "x" * 3000, "é日本", "\u202e", "\x00", "a\x00b", TRACE_ID, "0" * 32, "f" * 16,
    "1.2.3.4", "-5.0000000000000000000000000000000000000001", "2026-03-10T12:30:00Z",
]  # fmt: skip
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
VALUES = st.one_of(
    st.sampled_from(TRICKY),
    _text,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats().map(str),
    st.datetimes().map(lambda d: d.isoformat()),
)


def _json_containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(inner, max_size=3), st.dictionaries(_text, inner, max_size=3))


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(TRICKY),
        _text,
    ),
    _json_containers,
    max_leaves=6,
)
PATH_VALUES = {
    "{trace}": st.one_of(st.just(TRACE_ID), st.sampled_from(TRICKY), _text),
    "{span}": st.one_of(st.just("0" * 15 + "2"), st.sampled_from(TRICKY), _text),
    "{int}": st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str), _text),
    "{text}": st.one_of(st.sampled_from(TRICKY), _text),
}
FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def client() -> Client:
    """A superuser (every project, every write) with traffic in the database."""
    project = create_project("shop")
    for i in range(12):
        built = build_trace(
            i,
            start=NOW - timedelta(minutes=20 + i),
            route=("billing", "tech")[i % 2],
            label="billing",
            expected="tech" if i % 3 else None,
            tier=("free", "pro")[i % 2],
            fallback=i % 4 == 1,
            error=i == 5,
        )
        for batch in built.batches:
            store_spans(project.id, built.trace.records(batch))
    fold_changes()
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    logged_in = Client()
    logged_in.force_login(user)
    return logged_in


def _fill(path: str, data: st.DataObject) -> str:
    for placeholder, values in PATH_VALUES.items():
        while placeholder in path:
            value = data.draw(values, label=placeholder)
            path = path.replace(placeholder, _path_segment(value), 1)
    return path


def _path_segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="") or "x"


def _params(names: tuple[str, ...], data: st.DataObject) -> dict[str, str]:
    if not names:
        return {}
    return data.draw(st.dictionaries(st.sampled_from(names), VALUES, max_size=5), label="query")


def _check_api_answer(response: Any, sent: str) -> None:
    assert response.status_code < 500, (sent, response.status_code)
    if response.status_code >= 400:
        assert response["Content-Type"].startswith("application/json"), sent
        error = response.json()["error"]
        assert error["message"], sent


@pytest.mark.parametrize(("path", "names"), API_GETS, ids=[p for p, _ in API_GETS])
@FUZZ
@given(data=st.data())
def test_no_query_value_makes_an_api_endpoint_fail(
    client: Client, path: str, names: tuple[str, ...], data: st.DataObject
) -> None:
    url = _fill(path, data)
    params = _params(names, data)

    response = client.get(url, params)

    _check_api_answer(response, f"{url} {params!r}")


@pytest.mark.parametrize(("path", "names"), PAGES, ids=[p for p, _ in PAGES])
@FUZZ
@given(data=st.data())
def test_no_query_value_makes_a_page_fail(
    client: Client, path: str, names: tuple[str, ...], data: st.DataObject
) -> None:
    url = _fill(path, data)
    params = _params(names, data)

    response = client.get(url, params)

    assert response.status_code < 500, (url, params, response.status_code)


@pytest.mark.parametrize(("path", "names"), API_POSTS, ids=[p for p, _ in API_POSTS])
@FUZZ
@given(data=st.data())
def test_no_body_makes_an_api_write_fail(
    client: Client, path: str, names: tuple[str, ...], data: st.DataObject
) -> None:
    body = data.draw(
        st.one_of(
            st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=6),
            JSON_VALUES,
        ),
        label="body",
    )

    response = client.post(path, json.dumps(body), content_type="application/json")

    _check_api_answer(response, f"{path} {body!r}")


@pytest.mark.parametrize(
    "raw",
    [b"{", b"\xff\xfe", b"[1, 2", b'{"trace_id": "' + b"0" * 31 + b'1"', b"null", b"1e999999"],
)
def test_a_body_that_is_not_json_answers_400(client: Client, raw: bytes) -> None:
    response = client.post("/api/v1/feedback/", raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["message"]


# --- the cases of the report, by value ------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/metrics/fallback-rate/?start=2026-13-45",
        "/api/v1/micro-models/?start=2026-13-45",
        "/api/v1/spans/?start=2026-13-45",
        "/api/v1/metrics/fallback-rate/?end=2026-01-01T25:00:00",
    ],
)
def test_an_impossible_date_answers_400_naming_the_parameter_on_the_api(
    client: Client, url: str
) -> None:
    response = client.get(url)

    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert ("start: not an ISO 8601" in message) or ("end: not an ISO 8601" in message)


@pytest.mark.parametrize("page", ["/overview/", "/cohorts/", "/micro-models/intent-mini/", "/"])
def test_an_impossible_date_answers_400_naming_the_parameter_on_pages(
    client: Client, page: str
) -> None:
    response = client.get(page, {"start": "2026-13-45"})

    assert response.status_code == 400
    page = response.content.decode()
    assert "start: not an ISO 8601 date or time: &#x27;2026-13-45&#x27;" in page


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("/api/v1/traces/?fallback=true", "fallback"),
        ("/api/v1/traces/?limit=5&projects=1", "projects"),
        ("/api/v1/spans/?falback=true", "falback"),
        ("/api/v1/evaluations/?failed=1", "failed"),
        ("/api/v1/metrics/fallback-rate/?group=route", "group"),
        ("/api/v1/alert-events/?rule_id=1", "rule_id"),
        ("/api/v1/config/judges/?name=x", "name"),
        ("/api/v1/traces/" + TRACE_ID + "/?expand=1", "expand"),
    ],
)
def test_an_unknown_query_parameter_answers_400_naming_it(
    client: Client, url: str, name: str
) -> None:
    response = client.get(url)

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith(f"{name}: unknown query parameter")


def test_known_parameters_and_cohort_filters_still_work(client: Client) -> None:
    listed = client.get("/api/v1/traces/", {"limit": "5", "format": "json"})
    metric = client.get(
        "/api/v1/metrics/fallback-rate/",
        {"cohort.user.tier": "pro", "start": "2026-03-10T00:00:00Z", "end": "2026-03-11"},
    )

    assert listed.status_code == 200
    assert len(listed.json()["results"]) == 5
    assert metric.status_code == 200
    assert metric.json()["results"][0]["n"] == 6


def test_a_nul_character_in_a_query_answers_400(client: Client) -> None:
    api = client.get("/api/v1/alert-events/", {"kind": "fi\x00red"})
    page = client.get("/", {"micro_model": "a\x00b"})

    assert api.status_code == 400
    assert "NUL" in api.json()["error"]["message"]
    assert page.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/nope/",
        "/api/v1/traces/" + TRACE_ID + "/",
        "/api/v1/evaluations/abc/",
        "/api/v1/metrics/no-such-metric/",
        "/api/",
    ],
)
def test_the_apis_404s_are_json(client: Client, url: str) -> None:
    response = client.get(url)

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "not_found"
    assert response.json()["error"]["message"]


def test_a_pages_404_stays_a_page(client: Client) -> None:
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_the_fuzzed_parameters_cover_every_documented_endpoint_and_parameter() -> None:
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    fuzzed_gets = {re.sub(r"\{[a-z]+\}", "{}", path): set(names) for path, names in API_GETS}
    fuzzed_posts = {path for path, _ in API_POSTS}
    missing = []
    for path, operations in schema["paths"].items():
        template = re.sub(r"\{[a-z_]+\}", "{}", path)
        if "get" in operations:
            documented = {
                p["name"].replace("cohort.<key>", "cohort.user.tier")
                for p in operations["get"].get("parameters", [])
                if p["in"] == "query"
            }
            covered = next(
                (names for fuzzed, names in fuzzed_gets.items() if _matches(fuzzed, template)),
                None,
            )
            if covered is None or not documented <= covered:
                missing.append(f"GET {path} {sorted(documented - (covered or set()))}")
        if "post" in operations and "{" not in path and path not in fuzzed_posts:
            missing.append(f"POST {path}")
    assert missing == []


def _matches(fuzzed: str, template: str) -> bool:
    return fuzzed == template or (
        fuzzed.startswith("/api/v1/metrics/") and template == "/api/v1/metrics/{}/"
    )
