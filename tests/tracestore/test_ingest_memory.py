"""Memory stays bounded when the database goes away.

A failed export must free its request (body, decoded spans) as soon as it is answered.
Django raises database errors from inside a context manager whose frame holds the new
exception: a reference cycle through the traceback, which also holds the frames up to the
receiver's, with the decoded spans. Receivers run the cyclic collector rarely
(GC_THRESHOLDS), so before ``release_frames`` each failed export kept a few megabytes and
two receivers grew to 457 MB (gRPC) and 606 MB (HTTP) within five seconds of PostgreSQL
stopping
(bench/ingest.py --database-down-seconds, docs/benchmarks.md).
"""

from __future__ import annotations

import gc

import pytest
from django.db import connection

from microlens.postgres import free_port
from tests.builders import micro_model_trace
from tracestore.contracts import ProjectRef
from tracestore.ingest import Ingest, Status
from tracestore.services import store_span_rows

pytestmark = pytest.mark.django_db(transaction=True)


def _body(traces: int = 60) -> bytes:
    spans = []
    for _ in range(traces):
        spans += micro_model_trace().request().resource_spans[0].scope_spans[0].spans
    request = micro_model_trace().request(spans)
    return request.SerializeToString()


def test_an_export_failing_on_a_database_that_is_down_leaves_nothing_for_the_collector() -> None:
    body = _body()
    project = ProjectRef(id=1, name="p")
    ingest = Ingest(store_span_rows, lambda key: project)
    port = connection.settings_dict["PORT"]
    gc.collect()
    gc.disable()
    try:
        # The database "goes away": nothing listens where the connection now points.
        connection.close()
        connection.settings_dict["PORT"] = str(free_port())
        outcomes = [ingest.export({"authorization": "Bearer k"}, lambda: body) for _ in range(3)]
        assert {o.status for o in outcomes} == {Status.UNAVAILABLE}
        assert ingest.counters.values["requests_unavailable"] == 3
        # Everything the three exports allocated was freed by reference counting: the
        # cyclic collector finds nothing of theirs (it found about 2,500 objects before).
        assert gc.collect() < 100
    finally:
        gc.enable()
        connection.close()
        connection.settings_dict["PORT"] = port
    assert connection.cursor() is not None  # the test database is reachable again


def test_rejected_bodies_leave_nothing_for_the_collector() -> None:
    body = _body()
    malformed = body[: len(body) // 2]  # cut inside a span: not a valid request
    ingest = Ingest(store_span_rows, lambda key: ProjectRef(id=1, name="p"))
    gc.collect()
    gc.disable()
    try:
        outcomes = [
            ingest.export({"authorization": "Bearer k"}, lambda: malformed) for _ in range(3)
        ]
        assert {o.status for o in outcomes} == {Status.INVALID_ARGUMENT}
        assert gc.collect() < 100
    finally:
        gc.enable()
