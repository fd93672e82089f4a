"""Storage failures in the middle of an export, through the real receivers: a connection
lost mid-COPY or a lock held past the bound is transient (UNAVAILABLE / 503 with a retry
delay, and the retried export is stored once); data the database refuses is permanent
(INVALID_ARGUMENT / 400) and its answer carries no driver text."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import django.db
import grpc
import psycopg
import pytest
import requests
from django.db import connection
from google.rpc import code_pb2, error_details_pb2, status_pb2

from microlens.postgres import free_port
from tests.builders import micro_model_trace
from tests.tracestore.test_receiver_http import _serve
from tracestore.contracts import PermanentStorageError, TransientStorageError
from tracestore.http_receiver import build_app
from tracestore.models import Span, Trace
from tracestore.receiver import build_server
from tracestore.services import (
    classify_storage_error,
    create_project,
    issue_api_key,
    storage_errors,
    store_spans,
)

pytestmark = pytest.mark.django_db(transaction=True)

PROTOBUF = "application/x-protobuf"
# What an export is answered, whatever the protocol: (status, message, retry delay).
Answer = tuple[str, str, int]
Exporter = Callable[[bytes], Answer]


@pytest.fixture
def api_key() -> str:
    return issue_api_key(create_project("default").id)


@pytest.fixture
def bound(settings: Any) -> Callable[[int], None]:
    def set_bound(seconds: int) -> None:
        settings.MICROLENS_INGEST_DB_TIMEOUT_SECONDS = seconds

    set_bound(30)  # long enough for the tests to act in, on a loaded machine
    return set_bound


@pytest.fixture(params=["grpc", "http"])
def export(request: pytest.FixtureRequest, api_key: str, bound: Any) -> Iterator[Exporter]:
    """Sends one protobuf export to a receiver of the parameter's protocol, built when the
    test first sends (after it set the bound)."""
    started: list[Any] = []

    def send(body: bytes) -> Answer:
        if request.param == "grpc":
            if not started:
                receiver = build_server("127.0.0.1", 0, workers=2)
                receiver.start()
                started.append(receiver)
            channel = grpc.insecure_channel(f"127.0.0.1:{started[0].port}")
            method = channel.unary_unary(
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
            )
            try:
                method(body, metadata=(("authorization", f"Bearer {api_key}"),), timeout=60)
            except grpc.RpcError as error:
                trailing = dict(error.trailing_metadata() or ())
                delay = 0
                if "google.rpc.retryinfo-bin" in trailing:
                    info = error_details_pb2.RetryInfo.FromString(
                        trailing["google.rpc.retryinfo-bin"]
                    )
                    delay = info.retry_delay.seconds
                return error.code().name, error.details(), delay
            finally:
                channel.close()
            return "OK", "", 0
        if not started:
            serving = _serve(build_app())
            started.append((serving, next(serving)))
        url = started[0][1]
        response = requests.post(
            f"{url}/v1/traces",
            data=body,
            headers={"Content-Type": PROTOBUF, "Authorization": f"Bearer {api_key}"},
            timeout=60,
        )
        if response.status_code == 200:
            return "OK", "", 0
        answer = status_pb2.Status.FromString(response.content)
        delay = int(response.headers.get("Retry-After", "0"))
        if answer.details:
            info = error_details_pb2.RetryInfo()
            assert answer.details[0].Unpack(info)
            assert info.retry_delay.seconds == delay
        return code_pb2.Code.Name(answer.code), answer.message, delay

    yield send
    for item in started:
        if isinstance(item, tuple):
            next(item[0], None)  # shuts the server down
        else:
            item.stop(0)


def _connect() -> psycopg.Connection:
    """A connection of the test's own to the test database, outside Django."""
    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    return psycopg.connect(
        **{k: params[k] for k in keys if params.get(k) is not None}, autocommit=True
    )


def _backend_waiting_in_copy(probe: psycopg.Connection, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = probe.execute(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND query LIKE 'COPY tracestore_span %'"
        ).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.02)
    raise AssertionError("no export reached its COPY")


def _in_background(call: Callable[[], Answer]) -> futures.Future[Answer]:
    pool = futures.ThreadPoolExecutor(1)
    future = pool.submit(call)
    pool.shutdown(wait=False)
    return future


def test_a_backend_terminated_mid_copy_is_answered_retry_and_the_retry_stored_once(
    export: Exporter,
) -> None:
    body = micro_model_trace().request().SerializeToString()
    with _connect() as blocker, _connect() as admin:
        # Hold the span table, so the export's COPY is under way and waiting when its
        # backend is terminated (what a PostgreSQL restart does to every session).
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE tracestore_span IN ACCESS EXCLUSIVE MODE")
        answer = _in_background(lambda: export(body))
        pid = _backend_waiting_in_copy(admin)
        assert admin.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
        status, message, delay = answer.result(timeout=60)
        blocker.execute("ROLLBACK")
    # UNAVAILABLE on gRPC is the same code on HTTP, as a 503 (checked in the helper).
    assert (status, message, delay) == ("UNAVAILABLE", "storage unavailable, retry later", 2)
    assert Span.objects.count() == 0

    assert export(body) == ("OK", "", 0)  # what the exporter does on its own
    assert export(body) == ("OK", "", 0)  # a second resend changes nothing
    assert Span.objects.count() == 3
    assert Trace.objects.get().span_count == 3


def test_a_lock_held_past_the_bound_is_answered_retry(
    export: Exporter, bound: Callable[[int], None]
) -> None:
    bound(1)
    body = micro_model_trace().request().SerializeToString()
    with _connect() as blocker:
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE tracestore_span IN ACCESS EXCLUSIVE MODE")
        answer = export(body)  # lock_timeout, on the server: the connection is kept
        blocker.execute("ROLLBACK")
    assert answer == ("UNAVAILABLE", "storage unavailable, retry later", 2)
    assert export(body) == ("OK", "", 0)
    assert Span.objects.count() == 3


def test_data_the_database_refuses_is_permanent_and_its_text_is_not_sent(
    export: Exporter,
) -> None:
    trace = micro_model_trace()
    trace.spans[0].name = "secret-value-refused"
    body = trace.request().SerializeToString()
    with _connect() as admin:
        admin.execute(
            "ALTER TABLE tracestore_span ADD CONSTRAINT test_refuses"
            " CHECK (name <> 'secret-value-refused')"
        )
        try:
            answer = export(body)
            again = export(body)
        finally:
            admin.execute("ALTER TABLE tracestore_span DROP CONSTRAINT test_refuses")
    # Not retried (INVALID_ARGUMENT / 400), and the same answer every time; the driver's
    # message (which quotes the row) stays in the receiver's log.
    assert answer == again == ("INVALID_ARGUMENT", "batch refused by storage (SQLSTATE 23514)", 0)
    assert Span.objects.count() == 0


# -- the classification itself ---------------------------------------------------------------


def _raise_through_django(sql: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql)


def _raise_from_psycopg(sql: str) -> None:
    with _connect() as conn:
        conn.execute(sql)


@pytest.mark.parametrize("run", [_raise_through_django, _raise_from_psycopg])
@pytest.mark.parametrize(
    ("sql", "expected", "sqlstate"),
    [
        ("SELECT 1 / 0", PermanentStorageError, "22012"),
        ("SELECT 'x'::int", PermanentStorageError, "22P02"),
        ("SET statement_timeout = 10; SELECT pg_sleep(1)", TransientStorageError, "57014"),
        ("SELECT pg_terminate_backend(pg_backend_pid())", TransientStorageError, "57P01"),
    ],
)
def test_database_errors_are_classified_by_what_a_retry_would_do(
    run: Callable[[str], None], sql: str, expected: type, sqlstate: str
) -> None:
    with pytest.raises(expected) as caught, storage_errors():
        run(sql)
    assert caught.value.sqlstate == sqlstate
    assert str(caught.value).endswith(f"(SQLSTATE {sqlstate})")
    # The driver's error, with its message, stays the cause (for the logs).
    assert isinstance(caught.value.__cause__, (psycopg.Error, django.db.Error))
    connection.close()


def test_a_refused_connection_is_transient_and_other_errors_are_not_classified() -> None:
    with pytest.raises(TransientStorageError), storage_errors():
        psycopg.connect(f"postgresql://nobody@127.0.0.1:{free_port()}/none", connect_timeout=2)
    assert classify_storage_error(ValueError("not a database error")) is None
    with pytest.raises(ValueError), storage_errors():
        raise ValueError("left to propagate")


def test_the_bound_is_released_with_the_transaction(bound: Callable[[int], None]) -> None:
    # SET LOCAL: a connection that stored a batch keeps its own timeouts afterwards.
    bound(3)
    project_id = create_project("p").id
    store_spans(project_id, micro_model_trace().records())
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone() == ("0",)
