"""Headers and exposure: a Content-Security-Policy on every response that allows scripts
from this origin only (and no page carries an inline script or event handler: the browser
tests also count zero violations in Chromium's console), session and CSRF cookies Secure
by default when the public address is https, and the API schema and docs for logged-in
callers only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from dashboard.metrics.refresh import fold_changes
from tests.dashboard.metric_data import build_trace
from tracestore.services import create_project, issue_api_key, store_spans

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db

# An executable inline script: a <script> without src whose type is not a data block.
INLINE_SCRIPT = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*\btype=\"application/(?:json|ld\+json)\")[^>]*>", re.I
)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\s(on[a-z]+)\s*=", re.I)


@pytest.fixture
def staff_client() -> tuple[Client, str]:
    project = create_project("shop")
    built = build_trace(
        1,
        start=timezone.now() - timedelta(minutes=30),
        route="billing",
        label="billing",
        expected="billing",
        tier="pro",
        fallback=False,
    )
    for batch in built.batches:
        store_spans(project.id, built.trace.records(batch))
    fold_changes()
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client, built.trace.trace_hex


def _pages(trace_id: str) -> list[str]:
    return [
        "/",
        "/?micro_model=intent-mini&range=24h",
        f"/traces/{trace_id}/",
        "/overview/",
        "/micro-models/intent-mini/",
        "/cohorts/?dimension=user.tier",
        "/alerts/",
        "/api/docs/",
        "/admin/",
        "/admin/evaluators/judge/add/",
        "/admin/alerts/alertrule/add/",
    ]


def test_every_page_has_the_policy_and_no_inline_script(staff_client) -> None:
    client, trace_id = staff_client
    for path in _pages(trace_id):
        response = client.get(path)
        assert response.status_code == 200, path
        policy = response["Content-Security-Policy"]
        directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
        assert directives["script-src"] == "'self'", path
        assert directives["object-src"] == "'none'"
        assert directives["frame-ancestors"] == "'none'"
        html = response.content.decode()
        assert INLINE_SCRIPT.findall(html) == [], path
        assert EVENT_HANDLER.findall(html) == [], path


def test_the_login_page_the_api_and_errors_carry_the_policy_too() -> None:
    anonymous = Client()
    for response in (
        anonymous.get("/login/"),
        anonymous.get("/api/v1/traces/"),
        anonymous.get("/api/v1/no-such-endpoint/"),
        anonymous.get("/no-such-page/"),
    ):
        assert "script-src 'self'" in response["Content-Security-Policy"]


def test_the_api_docs_init_script_is_a_file_of_its_own(staff_client) -> None:
    client, _ = staff_client
    html = client.get("/api/docs/").content.decode()
    [script_url] = re.findall(r'<script src="(/api/docs/\?[^"]*)"', html)

    script = client.get(script_url.replace("&amp;", "&"))

    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle" in script.content


def test_the_schema_and_the_docs_need_a_login(staff_client) -> None:
    client, _ = staff_client
    anonymous = Client()
    key = issue_api_key(create_project("other").id, "docs")

    assert anonymous.get("/api/schema/").status_code == 401
    docs = anonymous.get("/api/docs/")
    assert (docs.status_code, docs["Location"]) == (302, "/login/?next=/api/docs/")
    assert anonymous.get("/api/docs/?script=").status_code == 302
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200
    keyed = anonymous.get("/api/schema/", headers={"Authorization": f"Bearer {key}"})
    assert keyed.status_code == 200
    assert b"/api/v1/traces/" in keyed.content


def _cookie_settings(**env: str) -> str:
    """SESSION_COOKIE_SECURE and CSRF_COOKIE_SECURE as the settings module reads them from
    ``env`` (a fresh process: settings are read once, at start)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MICROLENS_")}
    clean.update(
        {"MICROLENS_SECRET_KEY": "x" * 50, "DJANGO_SETTINGS_MODULE": "microlens.settings"},
        **env,
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from django.conf import settings;"
            "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE)",
        ],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.parametrize(
    ("env", "secure"),
    [
        ({"MICROLENS_PUBLIC_URL": "https://microlens.example.com"}, "True True"),
        ({"MICROLENS_PUBLIC_URL": "HTTPS://microlens.example.com/"}, "True True"),
        ({"MICROLENS_PUBLIC_URL": "http://localhost:8000"}, "False False"),
        ({}, "False False"),
        (
            {"MICROLENS_PUBLIC_URL": "https://m.example.com", "MICROLENS_SECURE_COOKIES": "false"},
            "False False",
        ),
        ({"MICROLENS_SECURE_COOKIES": "true"}, "True True"),
        (
            {"MICROLENS_PUBLIC_URL": "https://m.example.com", "MICROLENS_SECURE_COOKIES": ""},
            "True True",
        ),
    ],
)
def test_cookies_are_secure_by_default_when_the_public_address_is_https(
    env: dict[str, str], secure: str
) -> None:
    assert _cookie_settings(**env) == secure


def test_a_secure_session_cookie_is_sent_secure(settings) -> None:
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    get_user_model().objects.create_user("bea", password="pw-for-tests-1")
    client = Client()

    form = client.get("/login/")
    login = client.post("/login/", {"username": "bea", "password": "pw-for-tests-1"})

    assert form.cookies["csrftoken"]["secure"] is True
    assert login.cookies["sessionid"]["secure"] is True
    assert login.cookies["sessionid"]["httponly"] is True
