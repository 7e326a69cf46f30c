"""mp-sidecar with its Kubernetes backends (--backend=kubernetes: Lock custom
resources; --backend=lease: coordination.k8s.io/v1 Leases), through the
sidecar's HTTP protocol, against the fake API server over TLS with a bearer
token (or a real cluster with MP_TEST_KUBECONFIG).

Timing: the assertions bound *when* something may or must happen (a waiter is
woken by a notification well before its wait or the TTL would end it; a
holder is not taken over before it has been seen unchanged for its TTL), not
how fast anything runs.
"""
import json
import os
import re
import threading
import time

import pytest

import kubefake
from conftest import CRD_PATH, MICROTIME_RE, Sidecar, Store, microtime

RFC3339_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def acquire_in_thread(sc, name, owner, ttl, wait):
    """Runs a long-poll acquire in a thread; returns (thread, result dict with resp and t)."""
    result = {}

    def run():
        try:
            result["resp"] = sc.acquire(name, owner, ttl=ttl, wait=wait, timeout=wait + 30)
        except Exception as e:  # reported by the test
            result["error"] = e
        result["t"] = time.monotonic()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


# ---------------------------------------------------------------------------
# The protocol over both backends


def test_acquire_renew_release(sidecars, store, backend):
    sc = sidecars()
    r = sc.acquire("alpha", "proc-a", ttl=10)
    assert r.status == 200, r
    lock = r.json()
    assert (lock["owner"], lock["token"], lock["ttlSeconds"]) == ("proc-a", 1, 10)

    obj = store.get("alpha")
    assert obj is not None, "the lock must be stored as a Kubernetes object"
    owner, token, ttl, acquire_time, renew_time = store.record(obj)
    assert (owner, token, ttl) == ("proc-a", 1, 10)
    assert MICROTIME_RE.match(acquire_time) and MICROTIME_RE.match(renew_time), obj["spec"]
    if backend == "kubernetes":
        assert RFC3339_RE.match(obj["spec"]["expiry"]), obj["spec"]
    version = obj["metadata"]["resourceVersion"]

    # Renewal keeps the token and writes a new version.
    r = sc.acquire("alpha", "proc-a", ttl=10)
    assert r.status == 200, r
    assert r.json()["token"] == 1
    obj = store.get("alpha")
    assert obj["metadata"]["resourceVersion"] != version

    # Someone else is refused with the holder's record.
    r = sc.acquire("alpha", "proc-b", ttl=10)
    assert r.status == 409, r
    assert r.json()["owner"] == "proc-a"

    r = sc.request("GET", "/locks/alpha")
    assert r.status == 200 and r.json()["owner"] == "proc-a", r

    # Release clears the holder but keeps the object and its token.
    r = sc.release("alpha", "proc-a")
    assert r.status == 200, r
    obj = store.get("alpha")
    assert obj is not None, "release must keep the record (its fencing counter)"
    assert store.record(obj)[:2] == ("", 1)
    if backend == "lease":
        assert obj["spec"]["holderIdentity"] == "", "client-go writes holderIdentity \"\" on release"

    r = sc.acquire("alpha", "proc-b", ttl=10)
    assert r.status == 200 and r.json()["token"] == 2, r

    r = sc.request("GET", "/locks")
    assert r.status == 200, r
    assert [(l["name"], l["owner"]) for l in r.json()] == [("alpha", "proc-b")]
    assert sc.request("GET", "/readyz").status == 200


def test_objects_from_outside_are_listed_and_missing_ones_404(sidecars, store):
    sc = sidecars()
    store.write("outside", "someone", 30, 4, microtime(), microtime())
    r = sc.request("GET", "/locks/outside")
    assert r.status == 200, r
    assert (r.json()["owner"], r.json()["token"]) == ("someone", 4)
    assert sc.request("GET", "/locks/never-created").status == 404


def test_two_sidecars_race_one_winner_at_a_time(sidecars, store):
    a = sidecars(identity="sidecar-a")
    b = sidecars(identity="sidecar-b")
    guard = threading.Lock()
    state = {"holder": None, "tokens": [], "overlaps": [], "errors": [], "conflicts": 0}
    deadline = time.monotonic() + 20
    target = 30

    def worker(sc, me):
        while time.monotonic() < deadline:
            with guard:
                if len(state["tokens"]) >= target:
                    return
            r = sc.acquire("race", me, ttl=30)
            if r.status == 409:
                with guard:
                    state["conflicts"] += 1
                continue
            if r.status != 200:
                with guard:
                    state["errors"].append(r)
                continue
            with guard:
                if state["holder"] is not None:
                    state["overlaps"].append((state["holder"], me))
                state["holder"] = me
                state["tokens"].append(r.json()["token"])
            time.sleep(0.005)
            with guard:
                state["holder"] = None
            r = sc.release("race", me)
            if r.status != 200:
                with guard:
                    state["errors"].append(r)

    threads = [threading.Thread(target=worker, args=(sc, f"{name}-{i}"))
               for i in range(3) for sc, name in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not state["errors"], state["errors"][:5]
    assert not state["overlaps"], f"two holders at once: {state['overlaps'][:5]}"
    tokens = state["tokens"]
    assert len(tokens) >= 5, f"only {len(tokens)} acquisitions ({state['conflicts']} conflicts)"
    assert all(x < y for x, y in zip(tokens, tokens[1:])), f"tokens not strictly increasing: {tokens}"
    # Every acquisition incremented the stored counter exactly once.
    assert store.record(store.get("race"))[1] == tokens[-1] == len(tokens)


def test_conflict_409_from_the_api_server_is_retried(sidecars, store, kube):
    sc = sidecars()
    assert sc.acquire("gamma", "proc-a", ttl=30).status == 200

    # Another writer keeps changing the object (an annotation) while we renew:
    # the sidecar's PUTs then carry stale resourceVersions sometimes and get
    # 409 Conflict; it must re-read and carry on (never 5xx), and its PUTs of
    # the whole object must keep the other writer's annotation.
    stop = threading.Event()
    outside = {"ok": 0, "conflicts": 0, "last": None, "errors": []}

    def meddle():
        i = 0
        while not stop.is_set():
            i += 1
            obj = store.get("gamma")
            obj["metadata"].setdefault("annotations", {})["example.com/note"] = str(i)
            status, body = kube.put(store.path("gamma"), obj)
            if status == 200:
                outside["ok"] += 1
                outside["last"] = str(i)
            elif status == 409:
                outside["conflicts"] += 1
            else:
                outside["errors"].append((status, body))

    t = threading.Thread(target=meddle, daemon=True)
    t.start()
    try:
        # At least 15 rounds, and on until the other writer has got some
        # writes in too (it reads then writes, so back-to-back renewals can
        # win every race): short gaps give it windows; bounded by a deadline.
        deadline = time.monotonic() + 60
        rounds = 0
        while rounds < 15 or (outside["ok"] < 3 and time.monotonic() < deadline):
            rounds += 1
            r = sc.acquire("gamma", "proc-a", ttl=30)
            assert r.status == 200, r
            assert r.json()["token"] == 1
            r = sc.acquire("gamma", "proc-b", ttl=30)
            assert r.status == 409, r
            assert r.json()["owner"] == "proc-a"
            time.sleep(0.01)
    finally:
        stop.set()
        t.join(30)
    assert not outside["errors"], outside["errors"][:3]
    assert outside["ok"] > 0

    if kube.is_fake:
        # Deterministic: the API server answers the sidecar's next PUTs with
        # 409 Conflict three times; the renewal still succeeds.
        kube.fail(count=3, code=409, path_contains=store.path("gamma"), method="PUT")
        r = sc.acquire("gamma", "proc-a", ttl=30)
        assert r.status == 200, r
        assert r.json()["token"] == 1

    r = sc.acquire("gamma", "proc-a", ttl=30)
    assert r.status == 200, r
    obj = store.get("gamma")
    assert obj["metadata"]["annotations"]["example.com/note"] == outside["last"], \
        "a renewal dropped another writer's annotation"
    assert store.record(obj)[:2] == ("proc-a", 1)


def test_watch_wakes_a_waiter_on_the_other_sidecar(sidecars):
    a = sidecars(identity="sidecar-a")
    b = sidecars(identity="sidecar-b")
    assert a.acquire("delta", "holder", ttl=60).status == 200
    t, result = acquire_in_thread(b, "delta", "waiter", ttl=10, wait=40)
    b.wait_for_metric("mp_sidecar_waiters", 1)
    time.sleep(0.3)
    released_at = time.monotonic()
    assert a.release("delta", "holder").status == 200
    t.join(60)
    assert "error" not in result, result
    r = result["resp"]
    assert r.status == 200, r
    assert (r.json()["owner"], r.json()["token"]) == ("waiter", 2)
    # Woken by the watch event: well before its 40 s wait or the 60 s TTL.
    assert result["t"] - released_at < 10, f"waiter woke {result['t'] - released_at:.1f} s after the release"


def test_watch_expired_410_relists_and_still_wakes(sidecars, kube):
    if not kube.is_fake:
        pytest.skip("needs the fake API server to force a 410 (compaction)")
    a = sidecars(identity="sidecar-a")
    b = sidecars(identity="sidecar-b")
    assert a.acquire("epsilon", "holder", ttl=60).status == 200
    t, result = acquire_in_thread(b, "epsilon", "waiter", ttl=10, wait=40)
    b.wait_for_metric("mp_sidecar_waiters", 1)

    # Changes the sidecars do not watch move the resourceVersion past theirs;
    # the compaction then makes their versions too old: their watches are
    # closed and resuming them gets 410 Expired.
    status, body = kube.post(kube.ns_path("v1", "configmaps"), {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bump"}, "data": {"a": "b"}})
    assert status == 201, body
    kube.reset_requests()
    kube.compact()

    def relisted():
        lists = [r for r in kube.requests_log()
                 if r["method"] == "GET" and ("/locks" in r["path"] or "/leases" in r["path"])
                 and "watch" not in r["path"] and r["path"].split("?")[0].rstrip("/").endswith(("locks", "leases"))
                 and r["status"] == 200]
        return len(lists) >= 2  # both sidecars re-listed
    kube.wait_for(relisted, timeout=15, message="both sidecars re-list after the watch expired")
    time.sleep(0.5)

    released_at = time.monotonic()
    assert a.release("epsilon", "holder").status == 200
    t.join(60)
    assert "error" not in result, result
    r = result["resp"]
    assert r.status == 200, r
    assert r.json()["owner"] == "waiter"
    assert result["t"] - released_at < 10, f"waiter woke {result['t'] - released_at:.1f} s after the release"


# ---------------------------------------------------------------------------
# Expiry by observed time (clock skew)


def test_holder_with_future_timestamps_is_taken_over_after_ttl_unchanged(sidecars, store):
    sc = sidecars()
    # A holder whose clock runs an hour fast wrote the record, then stopped renewing.
    store.write("zeta", "fast-clock", 3, 5, microtime(3600), microtime(3600))
    r = sc.acquire("zeta", "me", ttl=10)
    assert r.status == 409, r  # just observed: held
    first_seen = time.monotonic()
    r = sc.acquire("zeta", "me", ttl=10, wait=30)
    taken = time.monotonic()
    assert r.status == 200, r
    assert r.json()["token"] == 6
    # Not before the record stayed unchanged for its 3 s TTL on our clock.
    assert taken - first_seen >= 2.9, f"taken over after {taken - first_seen:.2f} s"
    assert store.record(store.get("zeta"))[:2] == ("me", 6)


def test_holder_with_past_timestamps_that_keeps_renewing_is_not_taken_over(sidecars, store):
    sc = sidecars()
    # A holder whose clock runs an hour slow: its timestamps look long expired,
    # but it keeps renewing, so the record keeps changing.
    store.write("eta", "slow-clock", 3, 7, microtime(-3600), microtime(-3600))
    stop = threading.Event()

    def renew():
        while not stop.is_set():
            store.write("eta", "slow-clock", 3, 7, microtime(-3600), microtime(-3600))
            stop.wait(0.5)

    t = threading.Thread(target=renew, daemon=True)
    t.start()
    try:
        r = sc.acquire("eta", "me", ttl=10, wait=7)
        assert r.status == 409, r
        assert r.json()["owner"] == "slow-clock"
    finally:
        stop.set()
        t.join(30)
    stopped = time.monotonic()
    r = sc.acquire("eta", "me", ttl=10, wait=30)
    assert r.status == 200, r
    assert r.json()["token"] == 8
    assert time.monotonic() - stopped >= 2.0


# ---------------------------------------------------------------------------
# Lease interoperability with client-go


@pytest.mark.parametrize("backend", ["lease"])
def test_client_go_lease_excludes_us_until_it_stops_changing(sidecars, store, kube):
    sc = sidecars()
    name = "theta"
    now = microtime()
    # What client-go's LeaseLock writes when it becomes leader.
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": name, "namespace": kube.namespace},
             "spec": {"holderIdentity": "go-client", "leaseDurationSeconds": 2, "acquireTime": now,
                      "renewTime": now, "leaseTransitions": 3}}
    status, body = kube.post(store.path(), lease)
    assert status == 201, body
    stop = threading.Event()

    def go_renew():  # client-go renews every RetryPeriod
        while not stop.wait(0.4):
            cur = store.get(name)
            cur["spec"]["renewTime"] = microtime()
            kube.put(store.path(name), cur)

    t = threading.Thread(target=go_renew, daemon=True)
    t.start()
    try:
        r = sc.acquire(name, "me", ttl=15, wait=4)
        assert r.status == 409, r
        assert (r.json()["owner"], r.json()["ttlSeconds"], r.json()["token"]) == ("go-client", 2, 3)
    finally:
        stop.set()
        t.join(30)
    stopped = time.monotonic()
    r = sc.acquire(name, "me", ttl=15, wait=30)
    assert r.status == 200, r
    assert r.json()["token"] == 4
    assert time.monotonic() - stopped >= 1.5, "taken over before the Lease was unchanged for 2 s"

    # What a client-go contender reads: us as holder, with its field meanings.
    spec = store.get(name)["spec"]
    assert spec["holderIdentity"] == "me"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 4
    assert MICROTIME_RE.match(spec["acquireTime"]) and MICROTIME_RE.match(spec["renewTime"]), spec
    assert spec["acquireTime"] == spec["renewTime"]

    # Renewal moves renewTime, not acquireTime; release empties holderIdentity.
    time.sleep(0.01)
    assert sc.acquire(name, "me", ttl=15).status == 200
    spec2 = store.get(name)["spec"]
    assert spec2["acquireTime"] == spec["acquireTime"] and spec2["renewTime"] > spec["renewTime"]
    assert sc.release(name, "me").status == 200
    spec3 = store.get(name)["spec"]
    assert spec3["holderIdentity"] == "" and spec3["leaseTransitions"] == 4


@pytest.mark.parametrize("backend", ["lease"])
def test_lease_without_holder_is_free(sidecars, store, kube):
    sc = sidecars()
    status, body = kube.post(store.path(), {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                            "metadata": {"name": "iota"}, "spec": {}})
    assert status == 201, body
    r = sc.acquire("iota", "me", ttl=5)
    assert r.status == 200, r
    assert r.json()["token"] == 1


# ---------------------------------------------------------------------------
# The CRD


@pytest.mark.parametrize("backend", ["kubernetes"])
def test_crd_installed_when_missing_by_two_sidecars_at_once(sidecars, kube):
    status, _ = kube.get(CRD_PATH)
    if status == 200 and not kube.is_fake:
        pass  # a real cluster that already has it: still check both start and work
    else:
        assert status == 404
    if kube.is_fake:
        kube.reset_requests()
    a = sidecars(identity="sidecar-a", wait=False)
    b = sidecars(identity="sidecar-b", wait=False)
    a.wait_started()
    b.wait_started()

    status, crd = kube.get(CRD_PATH)
    assert status == 200, crd
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds.get("Established") == "True"
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]][:3] == ["Owner", "Expiry", "Token"]
    assert version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["owner"]["type"] == "string"
    assert (crd["spec"]["group"], crd["spec"]["scope"], crd["spec"]["names"]["kind"],
            crd["spec"]["names"]["listKind"], crd["spec"]["names"]["plural"]) == \
        ("metaparticle.io", "Namespaced", "Lock", "LockList", "locks")
    if kube.is_fake:
        posts = [r for r in kube.requests_log()
                 if r["method"] == "POST" and r["path"].startswith("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")]
        assert 1 <= len(posts) <= 2
        assert sorted(r["status"] for r in posts)[0] == 201
        if len(posts) == 2:  # the race happened: the loser got AlreadyExists and carried on
            assert sorted(r["status"] for r in posts)[1] == 409

    assert a.acquire("kappa", "x", ttl=10).status == 200
    r = b.acquire("kappa", "y", ttl=10)
    assert r.status == 409 and r.json()["owner"] == "x", r


@pytest.mark.parametrize("backend", ["kubernetes"])
def test_no_install_crd_without_crd_is_a_clear_error(sidecars, kube):
    status, _ = kube.get(CRD_PATH)
    if status == 200:
        pytest.skip("the cluster already has the Lock CRD")
    sc = sidecars("--no-install-crd", wait=False)
    code, err = sc.wait_exit()
    assert code == 1, err
    assert "locks.metaparticle.io is not installed" in err, err
    assert "deploy/crd.yaml" in err, err
    assert kube.get(CRD_PATH)[0] == 404, "--no-install-crd must not create the CRD"


# ---------------------------------------------------------------------------
# Failures


def test_wrong_token_is_a_clear_error(sidecars, kube, tmp_path):
    if not kube.is_fake:
        pytest.skip("writes a kubeconfig for the fake")
    bad = kubefake.write_kubeconfig(str(tmp_path / "bad-kubeconfig"), kube.url, kube.namespace,
                                    ca_file=kube.ca_file, token="not-the-token")
    sc = sidecars(kubeconfig=bad, wait=False)
    code, err = sc.wait_exit()
    assert code == 1, err
    assert "401 Unauthorized" in err and "rejected the credentials" in err, err
    assert bad in err, "the message names the kubeconfig to check"


def test_untrusted_server_certificate_is_a_clear_error(sidecars, kube, tmp_path):
    if not kube.is_fake:
        pytest.skip("writes a kubeconfig for the fake")
    # No CA in the kubeconfig: the fake's self-made CA is not trusted.
    bad = kubefake.write_kubeconfig(str(tmp_path / "no-ca"), kube.url, kube.namespace, token=kube.token)
    sc = sidecars(kubeconfig=bad, wait=False)
    code, err = sc.wait_exit()
    assert code == 1, err
    assert "cannot reach the Kubernetes API server at " + kube.url in err, err
    assert "certificate" in err, err


def test_forbidden_names_the_rbac_to_apply(sidecars, store, kube, backend):
    if not kube.is_fake:
        pytest.skip("needs the fake API server to inject 403")
    sc = sidecars()
    assert sc.acquire("lambda", "me", ttl=30).status == 200
    kube.fail(count=1, code=403, path_contains=store.path("lambda"), method="PUT",
              message=f'{store.resource} "lambda" is forbidden: User "system:serviceaccount:x:y" cannot update')
    r = sc.acquire("lambda", "me", ttl=30)
    assert r.status == 503, r
    msg = r.json()["message"]
    rbac = "deploy/rbac-kubernetes.yaml" if backend == "kubernetes" else "deploy/rbac-lease.yaml"
    assert "forbidden" in msg and rbac in msg and "'update'" in msg, msg
    assert sc.acquire("lambda", "me", ttl=30).status == 200


def test_forbidden_watch_makes_the_sidecar_unready_until_it_works(sidecars, kube, backend):
    if not kube.is_fake:
        pytest.skip("needs the fake API server to inject 403")
    sc = sidecars()
    assert sc.request("GET", "/readyz").status == 200
    # The next 3 watch requests are refused (as with a Role lacking 'watch');
    # closing the current watches makes the sidecar start a new one.
    kube.fail(count=3, code=403, path_contains="watch=1", method="GET",
              message="cannot watch resource in the namespace")
    kube.compact()
    rbac = "deploy/rbac-kubernetes.yaml" if backend == "kubernetes" else "deploy/rbac-lease.yaml"

    def unready():
        r = sc.request("GET", "/readyz")
        return r if r.status == 503 else None
    r = kube.wait_for(unready, timeout=15, interval=0.05, message="/readyz 503 while the watch is forbidden")
    msg = r.json()["message"]
    assert "forbidden" in msg and "'watch'" in msg and rbac in msg, msg
    # Once watching works again, the sidecar becomes ready by itself.
    kube.wait_for(lambda: sc.request("GET", "/readyz").status == 200, timeout=30, interval=0.2,
                  message="/readyz 200 again after the watch works")


def test_api_server_errors_are_5xx_never_409(sidecars, store, kube):
    if not kube.is_fake:
        pytest.skip("needs the fake API server to inject 500")
    sc = sidecars()
    assert sc.acquire("mu", "me", ttl=30).status == 200
    kube.fail(count=1, code=500, path_contains=store.path("mu"), method="GET")
    r = sc.acquire("mu", "other", ttl=30)
    assert r.status == 503, r
    assert "500" in r.json()["message"], r.json()


def test_unreachable_api_server(tmp_path, backend):
    # Always on an own fake: the test stops the API server.
    fake = kubefake.start(tmp_path / "fake")
    sc = None
    try:
        sc = Sidecar(["--backend", backend, "--kubeconfig", fake.kubeconfig, "--namespace", "default",
                      "--identity", "sidecar"]).wait_started()
        assert sc.acquire("nu", "me", ttl=30).status == 200
        assert sc.request("GET", "/readyz").status == 200
        fake.stop()

        deadline = time.monotonic() + 20
        while True:
            r = sc.request("GET", "/readyz")
            if r.status == 503:
                break
            assert time.monotonic() < deadline, f"/readyz still {r.status} after the API server stopped"
            time.sleep(0.1)
        assert "cannot reach the Kubernetes API server at " + fake.url in r.json()["message"], r

        for owner in ("me", "other"):
            r = sc.acquire("nu", owner, ttl=30)
            assert r.status >= 500, r
            assert fake.url in r.json()["message"], r
        r = sc.request("GET", "/locks/nu")
        assert r.status >= 500, r
        assert sc.request("GET", "/healthz").status == 200
        assert sc.terminate() == 0, sc.stderr_text()
    finally:
        if sc:
            sc.kill()
        fake.stop()
