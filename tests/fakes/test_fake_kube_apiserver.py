"""Self-test of the fake Kubernetes API server (tests/fakes/fake_kube_apiserver.py) via kubefake.

Each assertion is a behaviour of the real kube-apiserver that Metaparticle's Kubernetes code relies on.
Run: /usr/bin/python3 -m pytest -q tests/fakes/test_fake_kube_apiserver.py
"""
import http.client
import json
import os
import queue
import ssl
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kubefake  # noqa: E402

CONFLICT_MSG = ('Operation cannot be fulfilled on leases.coordination.k8s.io "{}": the object has been modified; '
                'please apply your changes to the latest version and try again')

LOCK_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "locks.metaparticle.io"},
    "spec": {"group": "metaparticle.io", "scope": "Namespaced",
             "names": {"plural": "locks", "singular": "lock", "kind": "Lock", "listKind": "LockList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "owner": {"type": "string"}, "expiry": {"type": "integer"},
                                   "token": {"type": "integer"}}}}}}}]}}


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    fake = kubefake.start(tmp_path_factory.mktemp("fake"))
    fake.create_namespace(kubefake.random_namespace())
    fake.write_kubeconfig()
    yield fake
    fake.stop()
    assert fake.proc.returncode is not None


def cm(name, data=None, labels=None):
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def lease(name, holder, rv=None, renew="2024-05-01T10:00:00.000000Z"):
    meta = {"name": name}
    if rv is not None:
        meta["resourceVersion"] = rv
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew,
                     "acquireTime": renew, "leaseTransitions": 0}}


def assert_status(body, code, reason):
    assert isinstance(body, dict), body
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure", body
    assert body["code"] == code and body["reason"] == reason, body
    assert body["metadata"] == {}


# --- transport and auth --------------------------------------------------------------

def test_tls_and_token(kube):
    assert kube.url.startswith("https://127.0.0.1:")
    token = kube.token
    try:
        kube.token = None
        status, body = kube.get("/api/v1/namespaces")
        assert status == 401
        assert_status(body, 401, "Unauthorized")
        kube.token = "wrong"
        assert kube.get("/api/v1/namespaces")[0] == 401
    finally:
        kube.token = token
    status, body = kube.get("/api/v1/namespaces")
    assert status == 200 and body["kind"] == "NamespaceList"
    assert {"default", "kube-system", kube.namespace} <= {n["metadata"]["name"] for n in body["items"]}
    # the server certificate verifies against the CA (hostname 127.0.0.1 via SAN) and not without it
    req = urllib.request.Request(kube.url + "/version", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=kube.ca_file), timeout=10) as r:
        assert json.load(r)["major"] == "1"
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(req, context=ssl.create_default_context(), timeout=10)
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value)
    # keep-alive: two requests on one connection
    conn = kube._connection(10)
    for _ in range(2):
        conn.request("GET", "/healthz", headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"ok"
    conn.close()


def test_client_certificate_auth(tmp_path):
    with kubefake.start(tmp_path, client_cert=True) as fake:
        assert fake.token is None and fake.client_cert_file
        assert fake.get("/api/v1/namespaces/default")[0] == 200
        fake.client_cert_file = None
        assert fake.get("/api/v1/namespaces/default")[0] == 401
        kc = open(fake.kubeconfig).read()
        assert "client-certificate-data" in kc and "certificate-authority-data" in kc


def test_discovery(kube):
    status, body = kube.get("/apis")
    assert status == 200 and body["kind"] == "APIGroupList"
    groups = {g["name"] for g in body["groups"]}
    assert {"apps", "batch", "coordination.k8s.io", "apiextensions.k8s.io"} <= groups
    status, body = kube.get("/apis/coordination.k8s.io/v1")
    assert status == 200 and body["kind"] == "APIResourceList"
    assert any(r["name"] == "leases" and r["namespaced"] and r["kind"] == "Lease" for r in body["resources"])
    assert kube.get("/api")[1]["versions"] == ["v1"]
    assert kube.get("/apis/nosuch.example.com/v1")[0] == 404


# --- CRUD and compare-and-swap ---------------------------------------------------------

def test_create_get_put_cas(kube):
    path = kube.ns_path("v1", "configmaps")
    status, created = kube.post(path, cm("cas", {"a": "1"}))
    assert status == 201
    meta = created["metadata"]
    assert meta["namespace"] == kube.namespace and meta["uid"] and meta["creationTimestamp"].endswith("Z")
    rv1 = meta["resourceVersion"]
    status, body = kube.post(path, cm("cas"))
    assert status == 409
    assert_status(body, 409, "AlreadyExists")
    assert body["message"] == 'configmaps "cas" already exists'
    assert body["details"] == {"name": "cas", "kind": "configmaps"}
    status, got = kube.get(f"{path}/cas")
    assert status == 200 and got["data"] == {"a": "1"} and got["kind"] == "ConfigMap"
    # update with the current resourceVersion succeeds and bumps it
    got["data"]["a"] = "2"
    status, upd = kube.put(f"{path}/cas", got)
    assert status == 200 and int(upd["metadata"]["resourceVersion"]) > int(rv1)
    # a stale resourceVersion conflicts
    got["data"]["a"] = "3"
    status, body = kube.put(f"{path}/cas", got)
    assert status == 409
    assert_status(body, 409, "Conflict")
    # configmaps allow an unconditional update; a missing one is 404
    uncond = cm("cas", {"a": "4"})
    assert kube.put(f"{path}/cas", uncond)[0] == 200
    status, body = kube.put(f"{path}/missing", cm("missing"))
    assert status == 404
    assert_status(body, 404, "NotFound")
    # no-op update keeps the resourceVersion
    _, cur = kube.get(f"{path}/cas")
    status, same = kube.put(f"{path}/cas", cur)
    assert status == 200 and same["metadata"]["resourceVersion"] == cur["metadata"]["resourceVersion"]
    # names, namespaces, generateName
    status, body = kube.post(path, cm("Bad_Name"))
    assert status == 422
    assert_status(body, 422, "Invalid")
    status, body = kube.post(path, {"metadata": {}})
    assert status == 422 and "name or generateName is required" in body["message"]
    status, body = kube.post(kube.ns_path("v1", "configmaps", namespace="no-such-ns"), cm("x"))
    assert status == 404 and body["message"] == 'namespaces "no-such-ns" not found'
    status, body = kube.post(path, {"metadata": {"generateName": "gen-"}, "data": {}})
    assert status == 201 and body["metadata"]["name"].startswith("gen-") and len(body["metadata"]["name"]) == 9
    # delete: 200, then 404
    status, body = kube.delete(f"{path}/cas")
    assert status == 200
    assert kube.delete(f"{path}/cas")[0] == 404
    assert kube.get(f"{path}/cas")[0] == 404


def test_lease_rules(kube):
    path = kube.ns_path("coordination.k8s.io/v1", "leases")
    status, created = kube.post(path, lease("l1", "alice"))
    assert status == 201 and "generation" not in created["metadata"]
    rv = created["metadata"]["resourceVersion"]
    status, body = kube.put(f"{path}/l1", lease("l1", "bob"))
    assert status == 422
    assert body["message"] == ('Lease.coordination.k8s.io "l1" is invalid: metadata.resourceVersion: Invalid value: '
                               '0x0: must be specified for an update')
    status, upd = kube.put(f"{path}/l1", lease("l1", "bob", rv))
    assert status == 200 and upd["spec"]["holderIdentity"] == "bob"
    status, body = kube.put(f"{path}/l1", lease("l1", "carol", rv))
    assert status == 409 and body["message"] == CONFLICT_MSG.format("l1")
    assert body["details"] == {"name": "l1", "group": "coordination.k8s.io", "kind": "leases"}
    # create on update
    status, body = kube.put(f"{path}/l2", lease("l2", "dave"))
    assert status == 201 and body["spec"]["holderIdentity"] == "dave"
    # MicroTime needs exactly six fractional digits; offsets are normalised to UTC
    status, body = kube.post(path, lease("l3", "x", renew="2024-05-01T10:00:00Z"))
    assert status == 400
    assert_status(body, 400, "BadRequest")
    status, body = kube.post(path, lease("l3", "x", renew="2024-05-01T12:00:00.123456+02:00"))
    assert status == 201 and body["spec"]["renewTime"] == "2024-05-01T10:00:00.123456Z"
    # delete with a stale resourceVersion precondition conflicts
    status, body = kube.delete(f"{path}/l1", {"preconditions": {"resourceVersion": rv}})
    assert status == 409
    assert kube.delete(f"{path}/l1", {"preconditions": {"resourceVersion": upd["metadata"]["resourceVersion"]}}
                       )[0] == 200


def test_concurrent_compare_and_swap(kube):
    path = kube.ns_path("coordination.k8s.io/v1", "leases")
    assert kube.post(path, lease("race", "nobody"))[0] == 201
    wins, unexpected = [], []

    def worker():
        for _ in range(6):
            _, cur = kube.get(f"{path}/race")
            cur["spec"]["leaseTransitions"] += 1
            status, body = kube.put(f"{path}/race", cur)
            if status == 200:
                wins.append(1)
            elif status != 409:
                unexpected.append((status, body))
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not unexpected
    assert wins and kube.get(f"{path}/race")[1]["spec"]["leaseTransitions"] == len(wins)


def test_list_selectors_and_pagination(kube):
    path = kube.ns_path("v1", "configmaps")
    for i, tier in enumerate(["web", "web", "db"]):
        assert kube.post(path, cm(f"sel-{i}", labels={"tier": tier, "app": "sel"}))[0] == 201
    status, body = kube.get(path + "?labelSelector=app%3Dsel,tier%21%3Ddb")
    assert status == 200 and body["kind"] == "ConfigMapList" and body["metadata"]["resourceVersion"]
    assert [o["metadata"]["name"] for o in body["items"]] == ["sel-0", "sel-1"]
    assert "kind" not in body["items"][0]  # typed lists omit the items' TypeMeta
    status, body = kube.get(path + "?labelSelector=tier+in+(db)")
    assert [o["metadata"]["name"] for o in body["items"]] == ["sel-2"]
    status, body = kube.get(path + "?fieldSelector=metadata.name%3Dsel-1")
    assert [o["metadata"]["name"] for o in body["items"]] == ["sel-1"]
    assert kube.get(path + "?fieldSelector=spec.foo%3Dx")[0] == 400
    status, page = kube.get(path + "?labelSelector=app%3Dsel&limit=2")
    assert len(page["items"]) == 2 and page["metadata"]["continue"]
    status, page2 = kube.get(path + "?labelSelector=app%3Dsel&limit=2&continue=" + page["metadata"]["continue"])
    assert [o["metadata"]["name"] for o in page2["items"]] == ["sel-2"] and "continue" not in page2["metadata"]


def test_patches(kube):
    path = kube.ns_path("v1", "configmaps")
    kube.post(path, cm("p", {"a": "1", "b": "2"}))
    status, body = kube.patch(f"{path}/p", {"data": {"a": None, "c": "3"}})
    assert status == 200 and body["data"] == {"b": "2", "c": "3"}
    status, body = kube.patch(f"{path}/p", [{"op": "replace", "path": "/data/b", "value": "9"}],
                              content_type="application/json-patch+json")
    assert status == 200 and body["data"]["b"] == "9"
    status, body = kube.patch(f"{path}/p", {"metadata": {"resourceVersion": "1"}, "data": {"x": "y"}})
    assert status == 409 and body["reason"] == "Conflict"
    assert kube.patch(f"{path}/nope", {"data": {}})[0] == 404


# --- server-side apply --------------------------------------------------------------------

def test_server_side_apply(kube):
    path = kube.ns_path("v1", "configmaps", "applied")
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n  b: '2'\n"
    status, body = kube.patch(path, doc, content_type="application/apply-patch+yaml")
    assert status == 422
    assert_status(body, 422, "Invalid")
    status, created = kube.patch(path + "?fieldManager=mgr-a", doc, content_type="application/apply-patch+yaml")
    assert status == 201 and created["data"] == {"a": "1", "b": "2"}
    assert created["metadata"]["managedFields"][0]["manager"] == "mgr-a"
    rv = created["metadata"]["resourceVersion"]
    status, same = kube.patch(path + "?fieldManager=mgr-a", doc, content_type="application/apply-patch+yaml")
    assert status == 200 and same["metadata"]["resourceVersion"] == rv
    # dropping a field this manager owned removes it; JSON bodies are accepted
    status, upd = kube.patch(path + "?fieldManager=mgr-a", {"apiVersion": "v1", "kind": "ConfigMap",
                                                            "metadata": {"name": "applied"}, "data": {"a": "5"}},
                             content_type="application/apply-patch+yaml")
    assert status == 200 and upd["data"] == {"a": "5"} and int(upd["metadata"]["resourceVersion"]) > int(rv)
    # another manager changing an owned field conflicts unless forced
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '6'\n"
    status, body = kube.patch(path + "?fieldManager=mgr-b", other, content_type="application/apply-patch+yaml")
    assert status == 409 and body["reason"] == "Conflict" and "mgr-a" in body["message"]
    status, body = kube.patch(path + "?fieldManager=mgr-b&force=true", other,
                              content_type="application/apply-patch+yaml")
    assert status == 200 and body["data"]["a"] == "6"


def test_apply_bumps_generation_of_workloads(kube):
    path = kube.ns_path("apps/v1", "deployments", "gen")
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gen"},
           "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "gen"}},
                    "template": {"metadata": {"labels": {"app": "gen"}},
                                 "spec": {"containers": [{"name": "c", "image": "img:1"}]}}}}
    status, body = kube.patch(path + "?fieldManager=t", dep, content_type="application/apply-patch+yaml")
    assert status == 201 and body["metadata"]["generation"] == 1
    dep["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    status, body = kube.patch(path + "?fieldManager=t", dep, content_type="application/apply-patch+yaml")
    assert status == 200 and body["metadata"]["generation"] == 2


# --- CRDs ------------------------------------------------------------------------------------

def test_crd_lifecycle(kube):
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    bad = json.loads(json.dumps(LOCK_CRD))
    bad["metadata"]["name"] = "widgets.metaparticle.io"
    bad["spec"]["names"] = {"plural": "widgets", "kind": "Widget"}
    del bad["spec"]["versions"][0]["schema"]
    status, body = kube.post(crds, bad)
    assert status == 422
    assert_status(body, 422, "Invalid")
    locks = kube.ns_path("metaparticle.io/v1", "locks")
    assert kube.get(locks)[0] == 404
    status, body = kube.post(crds, LOCK_CRD)
    assert status == 201
    assert kube.get(locks)[0] == 404  # not served until Established
    crd = kube.create_crd(LOCK_CRD)
    conds = {c["type"]: c for c in crd["status"]["conditions"]}
    assert conds["NamesAccepted"]["status"] == "True" and conds["Established"]["lastTransitionTime"]
    status, body = kube.get(locks)
    assert status == 200 and body["kind"] == "LockList"
    lock = {"apiVersion": "metaparticle.io/v1", "kind": "Lock", "metadata": {"name": "leader"},
            "spec": {"owner": "me", "expiry": 123, "unknown": "pruned"}}
    status, body = kube.post(locks, lock)
    assert status == 201 and body["metadata"]["generation"] == 1
    assert body["spec"] == {"owner": "me", "expiry": 123}  # unknown fields are pruned
    lock["metadata"]["name"] = "typed"
    lock["spec"]["expiry"] = "soon"
    status, body = kube.post(locks, lock)
    assert status == 422 and "spec.expiry" in body["message"]
    # custom resources: unconditional PUT allowed, strategic merge patch is not
    status, body = kube.put(f"{locks}/leader", {"apiVersion": "metaparticle.io/v1", "kind": "Lock",
                                                "metadata": {"name": "leader"}, "spec": {"owner": "you"}})
    assert status == 200 and body["metadata"]["generation"] == 2
    status, body = kube.patch(f"{locks}/leader", {"spec": {"owner": "x"}},
                              content_type="application/strategic-merge-patch+json")
    assert status == 415
    status, body = kube.delete(f"{locks}/leader")
    assert status == 200 and body["kind"] == "Lock"  # custom resources return the deleted object


def test_project_crd_is_accepted(kube):
    """deploy/crd.yaml (the sidecar's Lock CRD) installs and gets Established; date-time is validated."""
    import yaml
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "crd.yaml")
    if not os.path.exists(path):
        pytest.skip("deploy/crd.yaml not present")
    crd = yaml.safe_load(open(path))
    got = kube.create_crd(crd)
    assert got["status"]["acceptedNames"]["kind"] == crd["spec"]["names"]["kind"]
    version = next(v for v in crd["spec"]["versions"] if v.get("served"))
    plural = crd["spec"]["names"]["plural"]
    locks = kube.ns_path(f"{crd['spec']['group']}/{version['name']}", plural)
    status, body = kube.get(locks)
    assert status == 200 and body["kind"] == crd["spec"]["names"].get("listKind", crd["spec"]["names"]["kind"] + "List")
    spec_schema = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    dt = [k for k, v in spec_schema.items() if v.get("format") == "date-time"]
    if dt:
        obj = {"apiVersion": f"{crd['spec']['group']}/{version['name']}", "kind": crd["spec"]["names"]["kind"],
               "metadata": {"name": "bad-time"}, "spec": {dt[0]: "not a time"}}
        status, body = kube.post(locks, obj)
        assert status == 422 and f"spec.{dt[0]}" in body["message"]


# --- watch -------------------------------------------------------------------------------------

def test_watch_from_resource_version(kube):
    path = kube.ns_path("v1", "configmaps")
    _, created = kube.post(path, cm("w", {"n": "0"}))
    rv0 = created["metadata"]["resourceVersion"]
    for i in range(1, 4):
        assert kube.patch(f"{path}/w", {"data": {"n": str(i)}})[0] == 200
    with kube.watch(path, resourceVersion=rv0, fieldSelector="metadata.name=w") as w:
        assert w.status == 200
        assert w.resp.getheader("Transfer-Encoding") == "chunked"
        evs = w.events(3, timeout=5)
        assert [(e["type"], e["object"]["data"]["n"]) for e in evs] == [("MODIFIED", "1"), ("MODIFIED", "2"),
                                                                        ("MODIFIED", "3")]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
        assert rvs == sorted(rvs) and rvs[0] > int(rv0)
        kube.delete(f"{path}/w")
        ev = w.next_event(5)
        assert ev["type"] == "DELETED" and ev["object"]["metadata"]["name"] == "w"
        assert ev["object"]["kind"] == "ConfigMap"


def test_watch_initial_state_selector_and_timeout(kube):
    path = kube.ns_path("v1", "configmaps")
    kube.post(path, cm("wi", labels={"watch": "yes"}))
    with kube.watch(path, labelSelector="watch=yes", timeoutSeconds=1) as w:
        ev = w.next_event(5)
        assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "wi"
        kube.patch(f"{path}/wi", {"metadata": {"labels": {"watch": "no"}}})
        ev = w.next_event(5)
        assert ev["type"] == "DELETED" and ev["object"]["metadata"]["labels"]["watch"] == "no"
        t = time.monotonic()
        assert w.next_event(5) is None  # timeoutSeconds ends the stream cleanly
        assert time.monotonic() - t < 3


def test_watch_expired_after_compact(kube):
    path = kube.ns_path("v1", "configmaps")
    _, created = kube.post(path, cm("old", {"v": "0"}))
    rv0 = created["metadata"]["resourceVersion"]
    kube.patch(f"{path}/old", {"data": {"v": "1"}})
    open_watch = kube.watch(path, resourceVersion=rv0)
    assert open_watch.next_event(5)["type"] == "MODIFIED"
    status, _ = kube.compact()
    assert status == 200
    assert open_watch.next_event(5) is None  # compaction closes open watches
    open_watch.close()
    with kube.watch(path, resourceVersion=rv0) as w:
        assert w.status == 200
        ev = w.next_event(5)
        assert ev["type"] == "ERROR"
        assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
        assert ev["object"]["message"].startswith(f"too old resource version: {rv0} (")
        assert w.next_event(5) is None


def test_injected_failures_and_request_log(kube):
    path = kube.ns_path("v1", "configmaps")
    kube.fail(count=1, code=503, path_contains="/configmaps/flaky")
    status, body = kube.get(f"{path}/flaky")
    assert status == 503
    assert_status(body, 503, "ServiceUnavailable")
    assert kube.get(f"{path}/flaky")[0] == 404
    reqs = kube.requests_log()
    assert any(r["path"].endswith("/configmaps/flaky") and r["status"] == 503 for r in reqs)


def test_injected_delay_drop_and_probability(kube):
    """Fault injection for the chaos tests: a slow answer, no answer, a rule that never fires."""
    path = kube.ns_path("v1", "configmaps")
    kube.fail(count=1, code=0, delay=0.5, path_contains="/configmaps/slow")
    start = time.monotonic()
    assert kube.get(f"{path}/slow")[0] == 404  # code 0: the normal answer, late
    assert time.monotonic() - start >= 0.5
    kube.fail(count=1, code=500, drop=True, path_contains="/configmaps/dropped")
    with pytest.raises((ConnectionError, http.client.HTTPException, ssl.SSLError)):
        kube.get(f"{path}/dropped")
    assert kube.get(f"{path}/dropped")[0] == 404
    kube.fail(count=5, code=500, probability=0, path_contains="/configmaps/never")
    assert kube.get(f"{path}/never")[0] == 404
    assert kube.clear_failures()[1]["cleared"] == 1
    status, body = kube.request("POST", "/fake/fail?delay=soon")
    assert status == 400 and "delay" in body["message"]


def test_state_file_survives_restart(tmp_path):
    """--state-file: objects and resourceVersions survive a SIGKILL and restart on the same port;
    watch history does not (410 Expired), as after a real API server restart."""
    fake = kubefake.start(tmp_path, extra_args=["--state-file", str(tmp_path / "state.json")])
    try:
        fake.create_namespace(kubefake.random_namespace())
        fake.create_crd(LOCK_CRD)
        locks = fake.ns_path("metaparticle.io/v1", "locks")
        status, lock = fake.post(locks, {"apiVersion": "metaparticle.io/v1", "kind": "Lock",
                                         "metadata": {"name": "l1"}, "spec": {"owner": "a", "token": 7}})
        assert status == 201, lock
        leases = fake.ns_path("coordination.k8s.io/v1", "leases")
        status, le = fake.post(leases, lease("le1", "a"))
        assert status == 201, le
        url = fake.url
        fake.restart(sigkill=True)
        assert fake.url == url
        status, got = fake.get(f"{locks}/l1")
        assert status == 200 and got["spec"] == {"owner": "a", "token": 7}
        assert got["metadata"]["resourceVersion"] == lock["metadata"]["resourceVersion"]
        status, got_lease = fake.get(f"{leases}/le1")
        assert status == 200 and got_lease == le
        # Compare-and-swap goes on from the stored resourceVersion, and new ones are higher.
        got["spec"]["token"] = 8
        status, updated = fake.put(f"{locks}/l1", got)
        assert status == 200, updated
        assert int(updated["metadata"]["resourceVersion"]) > int(le["metadata"]["resourceVersion"])
        status, _ = fake.put(f"{locks}/l1", got)  # the old resourceVersion again
        assert status == 409
        with fake.watch(locks, resourceVersion=lock["metadata"]["resourceVersion"]) as w:
            ev = w.next_event(5)
            assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
    finally:
        fake.stop()


# --- workloads and logs ---------------------------------------------------------------------

def deployment(name, image, replicas=2):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "main", "image": image}]}}}}


def test_deployment_pods_running(kube):
    deps = kube.ns_path("apps/v1", "deployments")
    pods = kube.ns_path("v1", "pods")
    status, body = kube.post(deps, deployment("web", "registry.local/web:1"))
    assert status == 201

    def ready():
        _, d = kube.get(f"{deps}/web")
        st = d.get("status", {})
        return d if st.get("readyReplicas") == 2 and st.get("observedGeneration") == 1 else None
    d = kube.wait_for(ready, 10, message="deployment ready")
    assert {c["type"]: c["status"] for c in d["status"]["conditions"]}["Available"] == "True"
    _, plist = kube.get(pods + "?labelSelector=app%3Dweb")
    assert len(plist["items"]) == 2
    for p in plist["items"]:
        assert p["metadata"]["name"].startswith("web-") and len(p["metadata"]["name"].split("-")) == 3
        assert p["status"]["phase"] == "Running"
        assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    assert kube.delete(f"{deps}/web")[0] == 200
    kube.wait_for(lambda: not kube.get(pods + "?labelSelector=app%3Dweb")[1]["items"], 10, message="pods gone")


def test_image_pull_failure_and_job(kube):
    deps = kube.ns_path("apps/v1", "deployments")
    pods = kube.ns_path("v1", "pods")
    kube.post(deps, deployment("broken", "registry.local/fail-pull:1", replicas=1))

    def waiting():
        items = kube.get(pods + "?labelSelector=app%3Dbroken")[1]["items"]
        return items and (items[0]["status"].get("containerStatuses") or [{}])[0].get("state", {}).get("waiting")
    assert kube.wait_for(waiting, 10)["reason"] == "ErrImagePull"
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox:1"}]}}}}
    assert kube.post(kube.ns_path("batch/v1", "jobs"), job)[0] == 201
    done = kube.wait_for(lambda: kube.get(kube.ns_path("batch/v1", "jobs", "once"))[1].get("status", {})
                         .get("succeeded") == 1, 10)
    assert done


def test_pod_logs_follow(kube):
    pods = kube.ns_path("v1", "pods")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "logger"},
           "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}
    assert kube.post(pods, pod)[0] == 201
    kube.wait_for(lambda: kube.get(f"{pods}/logger")[1]["status"]["phase"] == "Running", 10)
    kube.append_log(kube.namespace, "logger", "line 1\n")
    status, text = kube.get(f"{pods}/logger/log")
    assert status == 200 and text == "line 1\n"
    with kube.open_stream(f"{pods}/logger/log?follow=true") as s:
        assert s.next_line(5) == "line 1\n"
        with pytest.raises(queue.Empty):
            s.next_line(0.3)
        kube.append_log(kube.namespace, "logger", "line 2\n")
        assert s.next_line(5) == "line 2\n"
        kube.delete(f"{pods}/logger")
        assert s.next_line(5) is None  # the stream ends when the pod is deleted


def test_namespace_deletion_removes_objects(kube):
    ns = kubefake.random_namespace("mp-gone")
    assert kube.post("/api/v1/namespaces", {"metadata": {"name": ns}})[0] == 201
    assert kube.post(kube.ns_path("v1", "configmaps", namespace=ns), cm("c"))[0] == 201
    status, body = kube.delete(f"/api/v1/namespaces/{ns}")
    assert status == 200 and body["status"]["phase"] == "Terminating"
    kube.wait_for(lambda: kube.get(f"/api/v1/namespaces/{ns}")[0] == 404, 10)
    assert kube.get(kube.ns_path("v1", "configmaps", "c", namespace=ns))[0] == 404


def test_kube_env_fake(tmp_path, monkeypatch):
    monkeypatch.delenv("MP_TEST_KUBECONFIG", raising=False)
    with kubefake.kube_env(tmp_path) as env:
        assert env.is_fake and env.namespace.startswith("mp-test-")
        assert env.get(f"/api/v1/namespaces/{env.namespace}")[0] == 200
        import yaml
        cfg = yaml.safe_load(open(env.kubeconfig))
        assert cfg["contexts"][0]["context"]["namespace"] == env.namespace
        assert cfg["users"][0]["user"]["token"] == env.token
        proc = env.proc
        w = env.watch(env.ns_path("v1", "configmaps"))
    assert proc.poll() is not None
    assert w.next_event(5) is None  # open watches end when the server stops
    w.close()
