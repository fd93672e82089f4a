from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client


def test_the_openapi_schema_validates_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    schema = yaml.safe_load(out.read_text())
    assert {"/api/v1/traces/", "/api/v1/traces/{trace_id}/"} <= set(schema["paths"])
    assert schema["components"]["securitySchemes"] == {
        "ApiKeyBearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "A project API key: `authorization: Bearer <key>`.",
        },
        "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "cookieAuth": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
    }


@pytest.mark.django_db
def test_the_schema_and_docs_are_served_without_a_cdn() -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_user("docs", password="pw-for-tests-1"))
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")

    assert schema.status_code == 200
    assert b"/api/v1/traces/{trace_id}/" in schema.content
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower()
    script = client.get("/api/docs/?script=").content.decode()
    assert "cdn" not in script.lower()


def _resolve(schema: dict, node: dict) -> dict:
    """A schema node with its references (and a described reference's allOf) followed."""
    while "$ref" in node or "allOf" in node:
        if "allOf" in node:
            node = node["allOf"][0]
            continue
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_every_api_answer_is_typed_not_a_bare_object(tmp_path: Path) -> None:
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out))
    schema = yaml.safe_load(out.read_text())

    bare = []
    for path, operations in schema["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            ok = operation.get("responses", {}).get("200")
            if ok is None or "content" not in ok:
                continue
            body = _resolve(schema, ok["content"]["application/json"]["schema"])
            if body.get("type") == "object" and "properties" not in body:
                bare.append(f"{method.upper()} {path}")
    assert bare == []


def test_the_shadow_and_thresholds_answers_name_their_fields(tmp_path: Path) -> None:
    out = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(out))
    schema = yaml.safe_load(out.read_text())

    def answer(path: str) -> dict:
        ok = schema["paths"][path]["get"]["responses"]["200"]
        return _resolve(schema, ok["content"]["application/json"]["schema"])

    shadow = answer("/api/v1/micro-models/{name}/shadow/")
    assert set(shadow["properties"]) == {"micro_model", "start", "end", "group_by", "results"}
    row = _resolve(schema, shadow["properties"]["results"]["items"])
    assert set(row["properties"]) == {
        "shadow_model",
        "cohort",
        "n",
        "agreement",
        "matrix",
        "with_expected_label",
        "live_accuracy",
        "shadow_accuracy",
        "difference",
    }
    agreement = _resolve(schema, row["properties"]["agreement"])
    assert set(agreement["properties"]) == {"n", "successes", "rate", "low", "high"}

    thresholds = answer("/api/v1/micro-models/{name}/thresholds/")
    assert set(thresholds["properties"]) == {
        "micro_model",
        "start",
        "end",
        "group_by",
        "target",
        "costs",
        "cohorts",
    }
    cohort = _resolve(schema, thresholds["properties"]["cohorts"]["items"])
    assert set(cohort["properties"]) == {"cohort", "n", "thresholds", "best", "costs", "cost_basis"}
    step = _resolve(schema, cohort["properties"]["thresholds"]["items"])
    assert set(step["properties"]) == {
        "threshold",
        "kept",
        "correct",
        "accuracy",
        "low",
        "high",
        "escalated",
        "escalated_share",
        "cost_per_1000",
    }
