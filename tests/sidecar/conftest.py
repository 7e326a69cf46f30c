"""Fixtures for the mp-sidecar protocol tests.

Each test gets its own sidecar on 127.0.0.1 with a free port (--listen
127.0.0.1:0; the port is read from the startup line). The binary comes from
$MP_SIDECAR_BIN (ctest sets it). Standard library only.
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

IDENTITY = "sidecar-identity"
STARTUP_RE = re.compile(r"^mp-sidecar listening on http://127\.0\.0\.1:(\d+) \(backend: .+\)$")


def sidecar_binary():
    path = os.environ.get("MP_SIDECAR_BIN")
    if not path:
        pytest.fail("set MP_SIDECAR_BIN to the mp-sidecar binary (ctest does this)", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"MP_SIDECAR_BIN={path} is not an executable file", pytrace=False)
    return path


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<Response {self.status} {self.body[:200]!r}>"


class Sidecar:
    def __init__(self, *args):
        defaults = ["--listen", "127.0.0.1:0"] + ([] if "--identity" in args else ["--identity", IDENTITY])
        self.args = [sidecar_binary(), *defaults, *args]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.stderr)
        line = self._read_startup_line(timeout=20)
        m = STARTUP_RE.match(line)
        if not m:
            self.kill()
            raise AssertionError(f"unexpected startup line {line!r}; stderr: {self.stderr_text()}")
        self.port = int(m.group(1))

    def _read_startup_line(self, timeout):
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
                    code = self.proc.wait(timeout=5)
                    raise AssertionError(f"mp-sidecar exited ({code}) before listening; stderr: {self.stderr_text()}")
                buf += chunk
        return buf.decode().strip()

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=30, conn=None):
        """One request; `body` may be bytes, str, or a dict/list (sent as JSON)."""
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

    # Shorthands for the lock protocol.
    def acquire(self, name, owner=None, ttl=None, wait=None, **kw):
        body = {}
        if owner is not None:
            body["owner"] = owner
        if ttl is not None:
            body["ttlSeconds"] = ttl
        path = f"/locks/{name}" + (f"?wait={wait}" if wait is not None else "")
        return self.request("PUT", path, body=body, **kw)

    def release(self, name, owner=None, **kw):
        path = f"/locks/{name}" + (f"?owner={owner}" if owner is not None else "")
        return self.request("DELETE", path, **kw)

    def metrics(self):
        r = self.request("GET", "/metrics")
        assert r.status == 200, r
        values = {}
        for line in r.body.decode().splitlines():
            if line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                values[key] = float(value)
        return values

    def wait_for_metric(self, key, value, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            got = self.metrics().get(key)
            if got == value:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"metric {key} is {got}, expected {value} within {timeout} s")
            time.sleep(0.02)

    def terminate(self, timeout=15):
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def sidecar():
    sc = Sidecar()
    yield sc
    try:
        code = sc.terminate()
    except subprocess.TimeoutExpired:
        sc.kill()
        raise AssertionError(f"mp-sidecar did not exit within 15 s of SIGTERM; stderr: {sc.stderr_text()}")
    assert code == 0, f"mp-sidecar exited with {code}; stderr: {sc.stderr_text()}"


@pytest.fixture
def start_sidecar():
    """Factory for tests that need their own flags or control shutdown themselves."""
    started = []

    def start(*args):
        sc = Sidecar(*args)
        started.append(sc)
        return sc

    yield start
    for sc in started:
        sc.kill()
