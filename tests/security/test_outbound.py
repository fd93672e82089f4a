"""Outbound requests: alert webhooks and LLM judges go only where the outbound-request guard
(microlens/outbound.py) lets them. Every spelling of a non-public address is refused, names
are resolved once and fail closed, the connection is pinned to the checked address with the
host name kept (Host header, TLS server name), and a redirect is an error. Real loopback
HTTP(S) servers stand in for the attacker's listener and for an allowed local target."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from dashboard.alerts.models import AlertDelivery
from dashboard.alerts.notify import check_webhook_url
from dashboard.alerts.services import evaluate_alert_rule
from dashboard.alerts.tasks import deliver
from evaluators.judges import JudgeError
from evaluators.judging import judge_for
from evaluators.models import Judge
from microlens import outbound
from tests.alerts.conftest import decisions, rule
from tests.celery_processes import filesystem_broker
from tests.dashboard.metric_data import NOW
from tracestore.services import create_project

# (URL, what the refusal says). None of these may be reached with private targets refused.
REFUSED = [
    # Legacy IPv4 spellings getaddrinfo reads as 127.0.0.1.
    ("http://2130706433/x", "dotted-quad"),
    ("http://0177.0.0.1/x", "dotted-quad"),
    ("http://0x7f.1/x", "dotted-quad"),
    ("http://0x7f000001/x", "dotted-quad"),
    ("http://127.1/x", "dotted-quad"),
    ("http://127.0.0.01/x", "dotted-quad"),
    # IPv6 forms carrying a non-public IPv4 address.
    ("http://[::ffff:127.0.0.1]/x", "not public"),
    ("http://[::ffff:7f00:1]/x", "not public"),
    ("http://[::127.0.0.1]/x", "not public"),
    ("http://[64:ff9b::a9fe:a9fe]/x", "not public"),  # NAT64 of 169.254.169.254
    ("http://[64:ff9b:1::a00:1]/x", "not public"),  # local-use NAT64
    ("http://[2002:7f00:1::1]/x", "not public"),  # 6to4 of 127.0.0.1
    ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/x", "not public"),  # Teredo of 127.0.0.1
    # Unspecified, loopback, private, link-local, CGNAT, reserved, multicast.
    ("http://0.0.0.0/x", "not public"),
    ("http://0.0.0.0:8000/x", "not public"),
    ("http://[::]/x", "not public"),
    ("http://[::1]:8000/x", "not public"),
    ("http://127.0.0.1/x", "not public"),
    ("http://10.1.2.3/x", "not public"),
    ("http://172.16.5.4/x", "not public"),
    ("http://192.168.0.10/x", "not public"),
    ("http://169.254.169.254/latest/meta-data", "not public"),
    ("http://100.64.0.1/x", "not public"),
    ("http://100.127.255.254/x", "not public"),
    ("http://198.18.0.1/x", "not public"),  # benchmarking
    ("http://192.0.2.1/x", "not public"),  # documentation
    ("http://224.0.0.1/x", "not public"),
    ("http://240.0.0.1/x", "not public"),
    ("http://255.255.255.255/x", "not public"),
    ("http://[fe80::1]/x", "not public"),
    ("http://[fd00::1]/x", "not public"),
    ("http://[ff02::1]/x", "not public"),
    ("http://[2001:db8::1]/x", "not public"),
    # A name resolving to loopback (/etc/hosts), in any case and with the root dot.
    ("http://localhost:8000/x", "not public"),
    ("http://LOCALHOST./x", "not public"),
    # Userinfo: the real host is after the @, whatever a reader takes the user part for.
    ("http://user:secret@1.1.1.1/x", "user names and passwords"),
    ("http://1.1.1.1@127.0.0.1/x", "user names and passwords"),
    ("http://1.1.1.1:80@127.0.0.1:8000/x", "user names and passwords"),
    # Backslash: urlsplit reads host 1.1.1.1, WHATWG parsers and requests 127.0.0.1.
    ("http://127.0.0.1:18999\\@1.1.1.1/x", "backslash"),
    ("http:\\\\127.0.0.1/x", "backslash"),
    # Fragment tricks.
    ("http://1.1.1.1#@127.0.0.1/x", "fragment"),
    ("http://127.0.0.1#.example.com/x", "fragment"),
    ("http://1.1.1.1/x#@127.0.0.1", "fragment"),
    # Other odd forms.
    ("http://[fe80::1%25eth0]/x", "zone id"),
    ("http://1.1.1.1:99999/x", "port"),
    ("http://1.1.1.1:80a/x", "port"),
    ("http://1.1.1.1:/x", "port"),
    ("http://127.0.0.1 /x", "spaces"),
    ("http://127.0.0.1%2f@1.1.1.1/x", "user names"),
    ("http://%31%32%37.0.0.1/x", "not a host name"),
    ("http:///x", "not a host name"),
    ("http://exa_mple..com/x", "not a host name"),
    ("http://[::1/x", "unclosed"),
    ("file:///etc/passwd", "http:// or https://"),
    ("gopher://1.1.1.1:70/x", "http:// or https://"),
    ("//1.1.1.1/x", "http:// or https://"),
    ("http://ex\u0430mple.com/x", "ASCII"),
    # Fails closed: a name that does not resolve is not sent to (nor resolved again later).
    ("http://does-not-resolve.invalid/x", "does not resolve"),
]

PUBLIC = [
    ("https://1.1.1.1/v1", "1.1.1.1", 443, "/v1"),
    ("http://93.184.216.34:8080/hook?x=1", "93.184.216.34", 8080, "/hook?x=1"),
    ("https://[2606:4700:4700::1111]/", "2606:4700:4700::1111", 443, "/"),
    ("https://[64:ff9b::101:101]/", "64:ff9b::101:101", 443, "/"),  # NAT64 of 1.1.1.1
    ("HTTPS://1.1.1.1", "1.1.1.1", 443, "/"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_every_spelling_of_a_non_public_or_ambiguous_target_is_refused(
    url: str, reason: str
) -> None:
    with pytest.raises(outbound.RefusedTarget, match=reason):
        outbound.check_url(url, allow_private=False)


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_allowing_private_targets_still_refuses_ambiguous_forms(url: str, reason: str) -> None:
    if reason == "not public":
        assert outbound.check_url(url, allow_private=True) is not None
    else:
        with pytest.raises(outbound.RefusedTarget, match=reason):
            outbound.check_url(url, allow_private=True)


@pytest.mark.parametrize(("url", "address", "port", "path"), PUBLIC)
def test_public_addresses_pass_and_are_pinned(url: str, address: str, port: int, path: str) -> None:
    target = outbound.check_url(url, allow_private=False)

    assert target is not None
    assert (target.address, target.port, target.path) == (address, port, path)


def test_a_name_is_resolved_to_the_address_connected_to() -> None:
    target = outbound.check_url("http://localhost:8123/a?b=c", allow_private=True)

    assert target == outbound.Target("http", "localhost", 8123, "/a?b=c", "127.0.0.1")


def test_saving_accepts_a_name_that_does_not_resolve_yet_and_sending_refuses_it() -> None:
    url = "https://does-not-resolve.invalid/v1"
    assert outbound.check_url(url, allow_private=False, saving=True) is None
    with pytest.raises(outbound.RefusedTarget, match="does not resolve"):
        outbound.post(url, b"{}", {}, allow_private=False, timeout=2)


# --- real servers ---------------------------------------------------------------------------


@dataclass
class Listener:
    """A loopback HTTP(S) server recording what reaches it, answering ``status`` with
    ``headers`` (e.g. a redirect)."""

    port: int = 0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


@contextmanager
def listener(
    status: int = 200,
    headers: dict[str, str] | None = None,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Listener]:
    state = Listener(status=status, headers=headers or {})

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(state.status)
            for key, value in state.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:

        def record_sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
            state.server_names.append(name)

        tls.sni_callback = record_sni  # type: ignore[assignment]
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_a_private_address_is_an_error_and_not_followed() -> None:
    with listener() as inner, listener(302, {"Location": "http://169.254.169.254/x"}) as outer:
        inner_url = f"http://127.0.0.1:{inner.port}/metadata"
        outer.headers["Location"] = inner_url
        with pytest.raises(outbound.RefusedTarget, match=r"redirect \(HTTP 302\)"):
            outbound.post(
                f"http://127.0.0.1:{outer.port}/hook",
                b"{}",
                {},
                allow_private=True,  # both servers are on loopback: the redirect is the test
                timeout=5,
            )

    assert len(outer.requests) == 1
    assert inner.requests == []


def test_the_connection_goes_to_the_resolved_address_with_the_name_as_host() -> None:
    with listener(201) as server:
        response = outbound.post(
            f"http://localhost:{server.port}/hook?a=1",
            b'{"k": 1}',
            {"Content-Type": "application/json"},
            allow_private=True,
            timeout=5,
        )

    assert (response.status, response.body) == (201, b"{}")
    [request] = server.requests
    assert request["path"] == "/hook?a=1"
    assert request["headers"]["Host"] == f"localhost:{server.port}"
    assert request["body"] == b'{"k": 1}'


def test_a_private_listener_is_never_reached_when_private_targets_are_refused() -> None:
    with listener() as server:
        for url in (
            f"http://127.0.0.1:{server.port}/x",
            f"http://localhost:{server.port}/x",
            f"http://[::ffff:127.0.0.1]:{server.port}/x",
            f"http://2130706433:{server.port}/x",
            f"http://127.0.0.1:{server.port}\\@1.1.1.1/x",
        ):
            with pytest.raises(outbound.RefusedTarget):
                outbound.post(url, b"{}", {}, allow_private=False, timeout=5)

    assert server.requests == []


@pytest.fixture(scope="module")
def localhost_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name ``localhost`` (openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_keeps_the_server_name_and_verifies_the_certificate(
    localhost_certificate: tuple[Path, Path],
) -> None:
    cert, key = localhost_certificate
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))

    with listener(tls=server_side) as server:
        response = outbound.post(
            f"https://localhost:{server.port}/v1",
            b"{}",
            {},
            allow_private=True,
            timeout=5,
            tls_context=trusting,
        )
        # Connected by address, the certificate (for localhost) does not match 127.0.0.1.
        with pytest.raises(outbound.Unreachable, match="TLS"):
            outbound.post(
                f"https://127.0.0.1:{server.port}/v1",
                b"{}",
                {},
                allow_private=True,
                timeout=5,
                tls_context=trusting,
            )
        # Without trusting it, the self-signed certificate is refused.
        with pytest.raises(outbound.Unreachable, match="TLS"):
            outbound.post(
                f"https://localhost:{server.port}/v1", b"{}", {}, allow_private=True, timeout=5
            )

    assert response.status == 200
    assert server.server_names[0] == "localhost"
    assert len(server.requests) == 1


# --- webhooks -------------------------------------------------------------------------------


@pytest.fixture
def project_id(settings) -> int:
    settings.MICROLENS_ALERT_EVAL_SECONDS = 60
    return create_project("shop").id


@pytest.fixture
def broker() -> Path:
    """kombu's filesystem broker folders, emptied (a failed delivery queues its retry)."""
    return filesystem_broker()


def _delivery_to(project_id: int, url: str, settings) -> int:
    """A fired rule's webhook delivery, retargeted at ``url`` after the rule was saved (as
    a row written before this guard existed would be)."""
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = True
    decisions(project_id, 40, fallbacks=10)
    r = rule(project_id, webhook_urls=["http://127.0.0.1:9/placeholder"])
    [delivery_id] = evaluate_alert_rule(r.id, NOW).deliveries
    AlertDelivery.objects.filter(id=delivery_id).update(target=url)
    return delivery_id


@pytest.mark.django_db
@pytest.mark.usefixtures("broker")
def test_the_backslash_webhook_no_longer_reaches_loopback(project_id: int, settings) -> None:
    with listener() as server:
        delivery_id = _delivery_to(
            project_id, f"http://127.0.0.1:{server.port}\\@1.1.1.1/x", settings
        )
        settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = False
        deliver(delivery_id)

    delivery = AlertDelivery.objects.get(id=delivery_id)
    assert delivery.status == "failed"
    assert delivery.last_error.startswith("refused:")
    assert "backslash" in delivery.last_error
    assert server.requests == []


@pytest.mark.django_db
@pytest.mark.usefixtures("broker")
def test_a_webhook_answering_a_redirect_fails_without_following(project_id: int, settings) -> None:
    with listener() as inner, listener(307) as outer:
        outer.headers["Location"] = f"http://127.0.0.1:{inner.port}/"
        delivery_id = _delivery_to(project_id, f"http://127.0.0.1:{outer.port}/hook", settings)
        deliver(delivery_id)

    delivery = AlertDelivery.objects.get(id=delivery_id)
    assert (delivery.status, len(outer.requests), inner.requests) == ("failed", 1, [])
    assert "redirect" in delivery.last_error


@pytest.mark.django_db
@pytest.mark.usefixtures("broker")
def test_a_webhook_to_an_allowed_private_target_is_delivered(project_id: int, settings) -> None:
    with listener() as server:
        delivery_id = _delivery_to(project_id, f"http://localhost:{server.port}/hook", settings)
        deliver(delivery_id)

    assert AlertDelivery.objects.get(id=delivery_id).status == "done"
    [request] = server.requests
    body = json.loads(request["body"])
    assert body["transition"] == "fired"
    assert request["headers"]["Idempotency-Key"] == body["idempotency_key"]
    assert request["headers"]["Content-Type"] == "application/json"


def test_a_webhook_url_naming_an_unresolvable_host_is_saved_but_not_sent(settings) -> None:
    settings.MICROLENS_ALERT_ALLOW_PRIVATE_WEBHOOKS = False
    check_webhook_url("https://does-not-resolve.invalid/hook", saving=True)
    with pytest.raises(outbound.RefusedTarget, match="does not resolve"):
        check_webhook_url("https://does-not-resolve.invalid/hook")


# --- judges ---------------------------------------------------------------------------------

JUDGE = {"name": "remote", "kind": "openai-compatible", "model": "judge-7b"}


@pytest.fixture
def superuser_api() -> APIClient:
    user = get_user_model().objects.create_superuser("root", password="pw-for-tests-1")
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://169.254.169.254/v1", "not public"),
        ("http://[64:ff9b::a9fe:a9fe]/v1", "not public"),
        ("http://2130706433/v1", "Enter a valid URL"),
        ("http://[::ffff:169.254.169.254]/v1", "not public"),
        ("http://127.1/v1", "base_url: "),
        ("http://localhost:11434/v1", "MICROLENS_JUDGE_ALLOW_PRIVATE"),
        ("http://user@1.1.1.1/v1", "user names"),
    ],
)
def test_the_api_refuses_a_judge_at_a_private_address_naming_the_field(
    superuser_api: APIClient, settings, base_url: str, reason: str
) -> None:
    settings.MICROLENS_JUDGE_ALLOW_PRIVATE = False

    response = superuser_api.post(
        "/api/v1/config/judges/", {**JUDGE, "base_url": base_url}, format="json"
    )

    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.startswith("base_url: ")
    assert reason in message
    assert not Judge.objects.exists()


@pytest.mark.django_db
def test_the_api_refuses_a_judge_moved_to_a_private_address(
    superuser_api: APIClient, settings
) -> None:
    settings.MICROLENS_JUDGE_ALLOW_PRIVATE = False
    judge = Judge.objects.create(**JUDGE, base_url="https://1.1.1.1/v1")

    response = superuser_api.patch(
        f"/api/v1/config/judges/{judge.id}/", {"base_url": "http://10.0.0.5/v1"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("base_url: ")
    judge.refresh_from_db()
    assert judge.base_url == "https://1.1.1.1/v1"


@pytest.mark.django_db
def test_a_local_judge_server_is_accepted_when_private_judges_are_allowed(
    superuser_api: APIClient, settings
) -> None:
    settings.MICROLENS_JUDGE_ALLOW_PRIVATE = True

    response = superuser_api.post(
        "/api/v1/config/judges/", {**JUDGE, "base_url": "http://localhost:11434/v1"}, format="json"
    )

    assert response.status_code == 201


@pytest.mark.django_db
def test_the_admin_refuses_a_judge_at_a_private_address(admin_client, settings) -> None:
    settings.MICROLENS_JUDGE_ALLOW_PRIVATE = False

    response = admin_client.post(
        "/admin/evaluators/judge/add/",
        {
            **JUDGE,
            "base_url": "http://169.254.169.254/v1",
            "api_key_env": "MICROLENS_JUDGE_API_KEY",
            "timeout_seconds": "20",
            "concurrency": "2",
        },
    )

    assert response.status_code == 200
    assert "base_url" in response.context["adminform"].form.errors
    assert not Judge.objects.exists()


@pytest.mark.django_db
def test_a_judge_saved_before_is_checked_again_when_called(settings) -> None:
    settings.MICROLENS_JUDGE_ALLOW_PRIVATE = False
    with listener() as server:
        config = Judge.objects.create(**JUDGE, base_url=f"http://127.0.0.1:{server.port}/v1")
        judge = judge_for(config)
        with pytest.raises(JudgeError, match="not public"):
            judge.task_completion("Why was I charged twice?", "Refund issued.")

        settings.MICROLENS_JUDGE_ALLOW_PRIVATE = True
        server.headers["Content-Type"] = "application/json"
        allowed = judge_for(config)
        with pytest.raises(JudgeError, match="no choices"):  # the listener answers {}
            allowed.task_completion("Why was I charged twice?", "Refund issued.")

    [request] = server.requests
    assert request["path"] == "/v1/chat/completions"
