"""Child processes that cannot outlive their supervisor, restarted when they die.

Every child runs in its own session (so a terminal's Ctrl-C reaches only the supervisor,
which then stops the children in order) and carries a parent-death signal, so even a
SIGKILLed supervisor leaves nothing behind. Output is read line by line and echoed with
the child's role as prefix.

A child that exits while the stack runs is restarted after a delay that doubles with each
failure in a row (``RestartPolicy``); the others keep serving meanwhile. Only repeated
*fast* failures (exits soon after a start, e.g. a broken installation) make the supervisor
give up on a child.

Linux sends the parent-death signal when the *thread* that forked the child ends, not the
process: spawn children from the main thread only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
# Loaded here, not in the forked child: dlopen after fork in a threaded parent can deadlock.
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def detached_child(
    death_signal: int, account: pwd.struct_passwd | None = None
) -> Callable[[], None]:
    """A ``preexec_fn``: new session, optionally drop to ``account``, then ask the kernel
    to send ``death_signal`` when we (the parent) die."""
    parent = os.getpid()
    prctl = _libc.prctl

    def preexec() -> None:
        os.setsid()
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
        # After the credential change, which clears the parent-death signal.
        if prctl(_PR_SET_PDEATHSIG, int(death_signal), 0, 0, 0) != 0:
            os._exit(126)
        # The parent may have died between fork and prctl; then no signal will ever come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class StopFlag:
    """A flag a signal handler may set. ``threading.Event.set()`` takes a lock: called from a
    handler that interrupts the main thread while it holds that lock (inside ``wait``), it
    deadlocks. Here ``set`` is a plain store and ``wait`` a sleep that signals cut short."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        if not self._set:
            time.sleep(timeout)
        return self._set


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a child that exited, and when to stop trying."""

    first_delay: float = 0.5
    max_delay: float = 30.0
    # A child that ran this long was healthy: its exit starts a new series of failures.
    stable_after: float = 60.0
    # Consecutive fast failures (each within ``stable_after`` of its start) before giving up.
    give_up_after: int = 5

    def delay(self, fast_failures: int) -> float:
        return min(self.max_delay, self.first_delay * 2 ** max(0, fast_failures - 1))


@dataclass
class Restarts:
    """One process's restart history, shared by the children and the embedded database."""

    policy: RestartPolicy
    count: int = 0
    fast_failures: int = 0
    started_at: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    last_exit: str | None = None
    last_exit_wall: float | None = None
    restart_at: float | None = None
    gave_up: bool = False

    def exited(self, description: str, now: float) -> float | None:
        """Record an exit; the delay before the restart, or None when it is time to give up."""
        self.last_exit = description
        self.last_exit_wall = time.time()
        if now - self.started_at < self.policy.stable_after:
            self.fast_failures += 1
        else:
            self.fast_failures = 0
        if self.fast_failures >= self.policy.give_up_after:
            self.gave_up = True
            self.restart_at = None
            return None
        delay = self.policy.delay(self.fast_failures)
        self.restart_at = now + delay
        return delay

    def started(self, now: float, *, restart: bool) -> None:
        self.started_at = now
        self.started_wall = time.time()
        self.restart_at = None
        if restart:
            self.count += 1

    def due(self, now: float) -> bool:
        return self.restart_at is not None and now >= self.restart_at

    def state(self, alive: bool) -> str:
        if self.gave_up:
            return "gave up"
        if self.restart_at is not None:
            return "restarting"
        return "running" if alive else "exited"

    def as_dict(self, pid: int | None, alive: bool) -> dict[str, object]:
        return {
            "pid": pid,
            "state": self.state(alive),
            "restarts": self.count,
            "since": round(self.started_wall, 3),
            "last_exit": self.last_exit,
            "last_exit_at": round(self.last_exit_wall, 3) if self.last_exit_wall else None,
        }


@dataclass
class Child:
    role: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes]
    pump: threading.Thread
    restarts: Restarts

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        return self.process.poll()

    def signal_group(self, signum: int) -> bool:
        """Signal the child's whole process group (gunicorn workers, postgres backends);
        False when the group is gone."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            return False
        except PermissionError:
            # A member of the group that changed credentials; the leader still gets it.
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)
        return True


@dataclass
class Supervisor:
    """Starts children with prefixed output, restarts those that die (``tick``) and stops
    them all: SIGTERM, then SIGKILL."""

    env: Mapping[str, str]
    cwd: Path
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    grace_seconds: float = 8.0
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Called before every (re)start: recreates what a child needs (e.g. broker folders).
    before_start: Callable[[], None] = lambda: None
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._write_lock = threading.Lock()

    def say(self, message: str, role: str = "microlens") -> None:
        self._emit(role, message)

    def _emit(self, role: str, line: str) -> None:
        with self._write_lock:
            self.out.write(f"[{role}] {line.rstrip()}\n")
            self.out.flush()

    def spawn(self, role: str, argv: Sequence[str]) -> Child:
        process, pump = self._start(role, argv)
        child = Child(role, list(argv), process, pump, Restarts(self.policy))
        self.children.append(child)
        return child

    def _start(
        self, role: str, argv: Sequence[str]
    ) -> tuple[subprocess.Popen[bytes], threading.Thread]:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("children must be spawned from the main thread (PDEATHSIG)")
        self.before_start()
        process = subprocess.Popen(
            list(argv),
            cwd=str(self.cwd),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=detached_child(signal.SIGTERM),
            close_fds=True,
        )
        pump = threading.Thread(
            target=self._pump, args=(role, process.stdout), name=f"pump-{role}", daemon=True
        )
        pump.start()
        return process, pump

    def _pump(self, role: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                self._emit(role, raw.decode("utf-8", errors="replace"))

    def tick(self) -> tuple[bool, Child | None]:
        """Notice exited children and restart those whose delay has passed.

        Returns (something changed, a child given up on)."""
        changed = False
        now = time.monotonic()
        for child in self.children:
            restarts = child.restarts
            if restarts.gave_up:
                continue
            if restarts.restart_at is None and child.poll() is not None:
                changed = True
                description = describe_exit(child.process.returncode)
                # What the leader left in its group (gunicorn workers) is asked to go now
                # and killed before the restart, so the new process finds its port free.
                child.signal_group(signal.SIGTERM)
                delay = restarts.exited(description, now)
                if delay is None:
                    self.say(
                        f"{child.role} (pid {child.pid}) {description}; it failed "
                        f"{restarts.fast_failures} times in a row, each within "
                        f"{self.policy.stable_after:.0f}s of its start: giving up"
                    )
                    return True, child
                self.say(
                    f"{child.role} (pid {child.pid}) {description}; restarting it in "
                    f"{delay:g}s (restart {restarts.count + 1})"
                )
            elif restarts.due(now):
                changed = True
                child.signal_group(signal.SIGKILL)
                child.pump.join(timeout=1)
                child.process, child.pump = self._start(child.role, child.argv)
                restarts.started(time.monotonic(), restart=True)
                self.say(f"restarted {child.role} (pid {child.pid}, restart {restarts.count})")
        return changed, None

    def stop(self, hurry: StopFlag | None = None) -> None:
        """Stop every child within ``grace_seconds`` (sooner when ``hurry`` is set)."""
        running = [child for child in self.children if child.poll() is None]
        for child in running:
            child.signal_group(signal.SIGTERM)
        started = time.monotonic()
        deadline = started + self.grace_seconds
        while running and time.monotonic() < deadline and not (hurry and hurry.is_set()):
            for child in [child for child in running if child.poll() is not None]:
                running.remove(child)
                self.say(
                    f"{child.role} stopped ({describe_exit(child.process.returncode)}, "
                    f"{time.monotonic() - started:.1f}s)"
                )
            time.sleep(0.05)
        for child in self.children:
            if child.poll() is None:
                self.say(f"{child.role} did not stop in time; killing it")
                child.signal_group(signal.SIGKILL)
                child.process.wait()
            # Whatever the leader left in its group (a wedged gunicorn worker) goes too.
            child.signal_group(signal.SIGKILL)
        for child in self.children:
            child.pump.join(timeout=2)
