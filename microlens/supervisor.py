"""Child processes that cannot outlive their supervisor.

Every child runs in its own session (so a terminal's Ctrl-C reaches only the supervisor,
which then stops the children in order) and carries a parent-death signal, so even a
SIGKILLed supervisor leaves nothing behind. Output is read line by line and echoed with
the child's role as prefix.

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


@dataclass
class Child:
    role: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes]
    pump: threading.Thread

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
    """Starts children with prefixed output and stops them all: SIGTERM, then SIGKILL."""

    env: Mapping[str, str]
    cwd: Path
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    grace_seconds: float = 8.0
    children: list[Child] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._write_lock = threading.Lock()

    def say(self, message: str, role: str = "microlens") -> None:
        self._emit(role, message)

    def _emit(self, role: str, line: str) -> None:
        with self._write_lock:
            self.out.write(f"[{role}] {line.rstrip()}\n")
            self.out.flush()

    def spawn(self, role: str, argv: Sequence[str], death_signal: int = signal.SIGTERM) -> Child:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("children must be spawned from the main thread (PDEATHSIG)")
        process = subprocess.Popen(
            list(argv),
            cwd=str(self.cwd),
            env=dict(self.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=detached_child(death_signal),
            close_fds=True,
        )
        pump = threading.Thread(
            target=self._pump, args=(role, process.stdout), name=f"pump-{role}", daemon=True
        )
        pump.start()
        child = Child(role=role, argv=list(argv), process=process, pump=pump)
        self.children.append(child)
        return child

    def _pump(self, role: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                self._emit(role, raw.decode("utf-8", errors="replace"))

    def first_exited(self) -> Child | None:
        for child in self.children:
            if child.poll() is not None:
                return child
        return None

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
