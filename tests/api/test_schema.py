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
