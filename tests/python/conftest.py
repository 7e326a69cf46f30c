"""Fixtures for the Python binding tests: a real mp-sidecar per test, unique
lock names, and child Python processes that hold locks or run elections.

The metaparticle package under test must be importable (run_tests.py builds
and installs it into a temporary directory on PYTHONPATH). The sidecar process
comes from tests/common/mp_sidecar.py (shared with the protocol and Kubernetes
suites); its binary from $MP_SIDECAR_BIN.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional

import pytest

HERE = Path(__file__).resolve().parent
CHILD = HERE / "child.py"

# run_tests.py runs pytest on this source directory (only the installed
# package lives elsewhere), so the shared helpers are found relative to it.
sys.path.insert(0, str(HERE.parent / "common"))
import mp_sidecar  # noqa: E402

# Generous upper bounds for things that should happen (so a slow CI machine
# does not fail), never assertions about how fast they happen.
WAIT = 30.0

# preexec_fn for every process the tests start (test_containerize.py imports it).
_die_with_parent = mp_sidecar.die_with_parent


class Sidecar(mp_sidecar.Sidecar):
    """One mp-sidecar process on 127.0.0.1 (a random port unless given),
    started on return."""

    def __init__(self, port: int = 0) -> None:
        super().__init__(port=port, preexec_fn=_die_with_parent)
        self.wait_started()

    # The tests kill sidecars to play a crash, so teardown does not ask for a
    # clean exit either: stop() here is SIGKILL, not the base SIGTERM + check.
    def stop(self) -> None:
        self.kill()


@pytest.fixture
def sidecar():
    s = Sidecar()
    yield s
    s.stop()


@pytest.fixture
def name() -> str:
    """A lock name no other test uses."""
    return f"py-{uuid.uuid4().hex[:12]}"


class Child:
    """A Python process running child.py (see there for the commands). It
    reports progress as lines on stdout; `expect` waits for one."""

    def __init__(self, args: List[str], env: Optional[dict] = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD)] + args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,
        )
        self.lines: List[str] = []
        self._cv = threading.Condition()
        self.stderr = ""
        self.eof = False
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self.eof = True
            self._cv.notify_all()

    def _read_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()

    def expect(self, prefix: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for line in self.lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    raise AssertionError(
                        f"child never printed {prefix!r}; stdout: {self.lines}; exit: {self.proc.poll()}; "
                        f"stderr: {self.stderr}"
                    )
                self._cv.wait(min(left, 0.1))

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = WAIT) -> int:
        rc = self.proc.wait(timeout)
        time.sleep(0.05)  # let the reader threads collect the last output
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@pytest.fixture
def child():
    started: List[Child] = []

    def start(*args: str, env: Optional[dict] = None) -> Child:
        c = Child(list(args), env)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def wait_for(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
