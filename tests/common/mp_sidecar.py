"""Start an mp-sidecar process and talk to it over HTTP, for pytest suites.

Used by tests/sidecar/conftest.py (protocol tests, memory backend),
tests/kube/conftest.py (Kubernetes backends) and tests/python/conftest.py (the
Python binding); each adds its own defaults and fixtures. The binary comes
from $MP_SIDECAR_BIN (ctest sets it). Standard library only.
"""
import http.client
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import time

import pytest

# One state directory (token epoch, run markers) for every sidecar this test
# process starts, so a sidecar restarted on the same port finds its marker
# while nothing touches the user's ~/.local/state.
STATE_DIR = tempfile.mkdtemp(prefix="mp-sidecar-state-")

STARTUP_RE = re.compile(r"^mp-sidecar listening on http://127\.0\.0\.1:(\d+) \(backend: .+\)$")
# Generous: these only bound how long a broken sidecar can stall a test, and
# the suites run on busy machines.
TIMEOUT = 60
TERMINATE_TIMEOUT = 20


def die_with_parent():
    """For Popen(preexec_fn=...): the child gets SIGKILL when the process (more
    exactly, the thread) that started it dies, so a killed or timed-out test
    run leaves nothing behind. Linux only; elsewhere a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def sidecar_binary():
    path = os.environ.get("MP_SIDECAR_BIN")
    if not path:
        pytest.fail("set MP_SIDECAR_BIN to the mp-sidecar binary (ctest does this)", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"MP_SIDECAR_BIN={path} is not an executable file", pytrace=False)
    return path


class Response:
    """An HTTP response, read in full; header names are lower-cased."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class Sidecar:
    """An mp-sidecar process on 127.0.0.1, by default with a free port
    (--listen 127.0.0.1:0); `port` asks for a given one (to restart a sidecar
    on the same address). `preexec_fn` goes to Popen (e.g. die_with_parent).

    The constructor only spawns it, so a test can start several at once or
    watch one fail at startup (wait_exit); wait_started() reads the port from
    the startup line."""

    def __init__(self, args=(), port=0, preexec_fn=None):
        state = [] if "--state-dir" in args else ["--state-dir", STATE_DIR]
        self.args = [sidecar_binary(), "--listen", f"127.0.0.1:{port}", *state, *args]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.stderr, preexec_fn=preexec_fn)
        self.port = None

    @property
    def url(self):
        """Base URL (http://127.0.0.1:PORT) once started, else None."""
        return None if self.port is None else f"http://127.0.0.1:{self.port}"

    def wait_started(self, timeout=TIMEOUT):
        """Reads the startup line and sets self.port; returns self."""
        line = self._read_startup_line(timeout)
        m = STARTUP_RE.match(line)
        if not m:
            self.kill()
            raise AssertionError(f"unexpected startup line {line!r}; stderr: {self.stderr_text()}")
        self.port = int(m.group(1))
        return self

    def _read_startup_line(self, timeout):
        # select + os.read rather than readline, so a sidecar that hangs
        # before printing fails the test instead of blocking it.
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise AssertionError(f"mp-sidecar printed no startup line in {timeout} s; stderr: {self.stderr_text()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self.proc.wait(timeout=10)
                    raise AssertionError(f"mp-sidecar exited ({code}) before listening; stderr: {self.stderr_text()}")
                buf += chunk
        return buf.decode().strip()

    def wait_exit(self, timeout=TIMEOUT):
        """For sidecars expected to fail at startup: (exit code, stderr)."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"mp-sidecar did not exit within {timeout} s; stderr: {self.stderr_text()}")
        return code, self.stderr_text()

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def connection(self, timeout=TIMEOUT):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=TIMEOUT, conn=None):
        """One request; `body` may be bytes, str, or a dict/list (sent as JSON).

        With `conn`, the request goes over that (kept-alive) connection, which
        stays open; otherwise over a new one, closed afterwards."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        own = conn is None
        conn = conn or self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            if own:
                conn.close()

    # Shorthands for the lock protocol; request_args go to request().
    def acquire(self, name, owner=None, ttl=None, wait=None, **request_args):
        body = {}
        if owner is not None:
            body["owner"] = owner
        if ttl is not None:
            body["ttlSeconds"] = ttl
        path = f"/locks/{name}" + (f"?wait={wait}" if wait is not None else "")
        return self.request("PUT", path, body=body, **request_args)

    def release(self, name, owner=None, **request_args):
        path = f"/locks/{name}" + (f"?owner={owner}" if owner is not None else "")
        return self.request("DELETE", path, **request_args)

    def metrics(self):
        """GET /metrics as {series (name with labels): value}."""
        r = self.request("GET", "/metrics")
        assert r.status == 200, r
        values = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                values[key] = float(value)
        return values

    def wait_for_metric(self, key, value, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            got = self.metrics().get(key)
            if got == value:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"metric {key} is {got}, expected {value} within {timeout} s")
            time.sleep(0.02)

    def terminate(self, timeout=TERMINATE_TIMEOUT):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout=TERMINATE_TIMEOUT):
        """terminate() for fixture teardown: None if it exited 0, else what went
        wrong (a sidecar that ignores SIGTERM is killed)."""
        try:
            code = self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return f"mp-sidecar did not exit within {timeout} s of SIGTERM; stderr: {self.stderr_text()}"
        if code != 0:
            return f"mp-sidecar exited with {code}; stderr: {self.stderr_text()}"
        return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
