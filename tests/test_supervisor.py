"""The restart policy `up` applies to its children and its PostgreSQL."""

from __future__ import annotations

from microlens.supervisor import RestartPolicy, Restarts


def test_the_delay_doubles_from_half_a_second_and_is_capped() -> None:
    policy = RestartPolicy()
    assert [policy.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_five_fast_failures_in_a_row_give_up() -> None:
    restarts = Restarts(RestartPolicy(), started_at=0.0)
    delays = []
    now = 0.0
    for _ in range(5):
        now += 1.0  # each exit one second after its start
        delays.append(restarts.exited("exited with code 1", now))
        if delays[-1] is not None:
            now += delays[-1]
            restarts.started(now, restart=True)
    assert delays == [0.5, 1, 2, 4, None]
    assert (restarts.count, restarts.gave_up, restarts.state(alive=False)) == (4, True, "gave up")


def test_a_part_that_ran_a_minute_starts_a_new_series() -> None:
    restarts = Restarts(RestartPolicy(), started_at=0.0)
    for now in (1.0, 3.0, 6.0, 12.0):  # four fast failures, each restarted at once
        restarts.exited("was killed by SIGKILL", now)
        restarts.started(now, restart=True)
    assert restarts.fast_failures == 4

    assert restarts.exited("was killed by SIGKILL", 12.0 + 60.0) == 0.5
    assert (restarts.fast_failures, restarts.gave_up) == (0, False)
    assert restarts.state(alive=False) == "restarting"
