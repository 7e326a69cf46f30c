"""Fixtures for the Kubernetes backend tests of mp-sidecar.

The API server comes from tests/fakes/kubefake.kube_env: a real cluster when
MP_TEST_KUBECONFIG names a kubeconfig, else the fake API server (TLS + bearer
token). Each test gets a fresh namespace, removed at the end. The sidecar
process comes from tests/common/mp_sidecar.py (shared with the protocol
suite); its binary from $MP_SIDECAR_BIN (ctest sets it). Standard library only
(+ kubefake, mp_sidecar).
"""
import datetime
import os
import re
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import kubefake  # noqa: E402
from mp_sidecar import Sidecar  # noqa: E402

MICROTIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/locks.metaparticle.io"


def microtime(offset_seconds=0.0):
    """Kubernetes MicroTime (RFC 3339, 6 fractional digits, UTC), now + offset."""
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
        if sc.proc.poll() is None:
            problem = sc.stop()
            if problem:
                problems.append(problem)
    assert not problems, "\n".join(problems)
