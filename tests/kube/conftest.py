"""Fixtures for the Kubernetes backend tests of mp-sidecar.

The API server comes from tests/fakes/kubefake.kube_env: a real cluster when
MP_TEST_KUBECONFIG names a kubeconfig, else the fake API server (TLS + bearer
token). Each test gets a fresh namespace, removed at the end. The sidecar
binary comes from $MP_SIDECAR_BIN (ctest sets it). Standard library only
(+ kubefake).
"""
import datetime
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))
import kubefake  # noqa: E402

STARTUP_RE = re.compile(r"^mp-sidecar listening on http://127\.0\.0\.1:(\d+) \(backend: .+\)$")
MICROTIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/locks.metaparticle.io"


def sidecar_binary():
    path = os.environ.get("MP_SIDECAR_BIN")
    if not path:
        pytest.fail("set MP_SIDECAR_BIN to the mp-sidecar binary (ctest does this)", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"MP_SIDECAR_BIN={path} is not an executable file", pytrace=False)
    return path


def microtime(offset_seconds=0.0):
    """Kubernetes MicroTime (RFC 3339, 6 fractional digits, UTC), now + offset."""
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Response:
    def __init__(self, status, body):
        self.status = status
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"


class Sidecar:
    """An mp-sidecar process. spawn() does not wait; wait_started() reads the startup line."""

    def __init__(self, args):
        self.args = [sidecar_binary(), "--listen", "127.0.0.1:0", *args]
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=self.stderr)
        self.port = None

    def wait_started(self, timeout=60):
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
        line = buf.decode().strip()
        m = STARTUP_RE.match(line)
        if not m:
            self.kill()
            raise AssertionError(f"unexpected startup line {line!r}; stderr: {self.stderr_text()}")
        self.port = int(m.group(1))
        return self

    def wait_exit(self, timeout=60):
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

    def request(self, method, path, body=None, timeout=60):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body)
            r = conn.getresponse()
            return Response(r.status, r.read())
        finally:
            conn.close()

    def acquire(self, name, owner, ttl=None, wait=None, timeout=60):
        body = {"owner": owner}
        if ttl is not None:
            body["ttlSeconds"] = ttl
        path = f"/locks/{name}" + (f"?wait={wait}" if wait is not None else "")
        return self.request("PUT", path, body=body, timeout=timeout)

    def release(self, name, owner):
        return self.request("DELETE", f"/locks/{name}?owner={owner}")

    def metric(self, key):
        r = self.request("GET", "/metrics")
        assert r.status == 200, r
        for line in r.body.decode().splitlines():
            if line.startswith(key + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def wait_metric(self, key, value, timeout=15):
        deadline = time.monotonic() + timeout
        while self.metric(key) != value:
            if time.monotonic() > deadline:
                raise AssertionError(f"metric {key} did not reach {value} within {timeout} s")
            time.sleep(0.02)

    def terminate(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Store:
    """Direct access to the objects a backend stores locks in (Lock or Lease),
    to check what the sidecar wrote and to play other writers."""

    def __init__(self, env, backend):
        self.env = env
        self.backend = backend
        if backend == "kubernetes":
            self.api_version, self.resource, self.kind = "metaparticle.io/v1", "locks", "Lock"
        else:
            self.api_version, self.resource, self.kind = "coordination.k8s.io/v1", "leases", "Lease"

    def path(self, name=None):
        return self.env.ns_path(self.api_version, self.resource, name)

    def get(self, name):
        status, obj = self.env.get(self.path(name))
        assert status in (200, 404), (status, obj)
        return obj if status == 200 else None

    def record(self, obj):
        """(owner, token, ttl, acquireTime, renewTime) of an object."""
        spec = obj.get("spec") or {}
        if self.backend == "kubernetes":
            return (spec.get("owner", ""), spec.get("token", 0), spec.get("ttlSeconds"), spec.get("acquireTime"),
                    spec.get("renewTime"))
        return (spec.get("holderIdentity") or "", spec.get("leaseTransitions", 0), spec.get("leaseDurationSeconds"),
                spec.get("acquireTime"), spec.get("renewTime"))

    def spec(self, owner, ttl, token, acquire_time, renew_time):
        if self.backend == "kubernetes":
            return {"owner": owner, "ttlSeconds": ttl, "token": token, "acquireTime": acquire_time,
                    "renewTime": renew_time, "expiry": renew_time}
        return {"holderIdentity": owner, "leaseDurationSeconds": ttl, "leaseTransitions": token,
                "acquireTime": acquire_time, "renewTime": renew_time}

    def write(self, name, owner, ttl, token, acquire_time, renew_time, attempts=20):
        """Create or replace (compare-and-swap, retried) the record like another client would."""
        for _ in range(attempts):
            cur = self.get(name)
            if cur is None:
                obj = {"apiVersion": self.api_version, "kind": self.kind,
                       "metadata": {"name": name, "namespace": self.env.namespace},
                       "spec": self.spec(owner, ttl, token, acquire_time, renew_time)}
                status, body = self.env.post(self.path(), obj)
                if status == 201:
                    return body
            else:
                cur["spec"] = {**(cur.get("spec") or {}), **self.spec(owner, ttl, token, acquire_time, renew_time)}
                status, body = self.env.put(self.path(name), cur)
                if status == 200:
                    return body
            assert status == 409, (status, body)
        raise AssertionError(f"could not write {name} in {attempts} attempts")


@pytest.fixture
def kube(tmp_path):
    env = kubefake.kube_env(tmp_path)
    try:
        yield env
    finally:
        env.stop()


@pytest.fixture(params=["kubernetes", "lease"])
def backend(request):
    return request.param


@pytest.fixture
def store(kube, backend):
    return Store(kube, backend)


@pytest.fixture
def sidecars(kube, backend):
    """Factory: spawn(*extra_args, kubeconfig=..., wait=True) -> Sidecar on the test's cluster and backend.

    Sidecars still running at the end get SIGTERM and must exit 0."""
    started = []

    def spawn(*extra, kubeconfig=None, wait=True, identity="sidecar", backend_name=None):
        args = ["--backend", backend_name or backend, "--kubeconfig", kubeconfig or kube.kubeconfig,
                "--namespace", kube.namespace, "--identity", identity, *extra]
        sc = Sidecar(args)
        started.append(sc)
        return sc.wait_started() if wait else sc

    yield spawn
    problems = []
    for sc in started:
        if sc.proc.poll() is not None:
            continue
        try:
            code = sc.terminate()
        except subprocess.TimeoutExpired:
            sc.kill()
            problems.append(f"mp-sidecar did not exit within 20 s of SIGTERM; stderr: {sc.stderr_text()}")
            continue
        if code != 0:
            problems.append(f"mp-sidecar exited with {code}; stderr: {sc.stderr_text()}")
    assert not problems, "\n".join(problems)
