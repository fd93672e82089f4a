"""A task for the broker tests only (a worker loads it with ``--include``): appends its
number to the file named by ``MICROLENS_TEST_PROBE_LOG``, one line per run."""

from __future__ import annotations

import os

from celery import current_app, shared_task

# This worker lists an empty queue folder every millisecond instead of every second, so
# it is listing the folder while the test writes the next message: the race under test.
current_app.conf.broker_transport_options = {
    **current_app.conf.broker_transport_options,
    "polling_interval": 0.001,
}


@shared_task(name="tests.broker_probe.record", ignore_result=True)
def record(number: int, padding: str = "") -> None:
    with open(os.environ["MICROLENS_TEST_PROBE_LOG"], "a") as log:
        log.write(f"{number}\n")
