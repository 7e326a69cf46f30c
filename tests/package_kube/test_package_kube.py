"""containerize with "runner": "kubernetes", through the C API (kube_app; see conftest.py)."""
import json
import os
import socket
import time

import pytest

import kubefake

LABELS = {"app.kubernetes.io/name": None, "app.kubernetes.io/managed-by": "metaparticle"}
RENDER_REPO = "127.0.0.1:5000/mptest"


def labels_for(name):
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "metaparticle"}


def kube_options(registry, name, **kw):
    o = {"name": name, "runner": "kubernetes", "repository": registry.repository, "publish": True}
    o.update(kw)
    return o


def selector(name):
    return f"app.kubernetes.io/name={name},app.kubernetes.io/managed-by=metaparticle"


def get(kube, api_version, resource, name):
    return kube.get(kube.ns_path(api_version, resource, name))


def pods_of(kube, name):
    st, body = kube.get(kube.ns_path("v1", "pods") + "?labelSelector=" + selector(name).replace("/", "%2F"))
    assert st == 200, body
    return [p for p in body["items"] if not p["metadata"].get("deletionTimestamp")]


def assert_gone(kube, name, kinds=(("apps/v1", "deployments"), ("v1", "services"), ("batch/v1", "jobs"))):
    for api_version, resource in kinds:
        kube.wait_for(lambda: get(kube, api_version, resource, name)[0] == 404, timeout=60,
                      message=f"{resource}/{name} to be deleted")
    kube.wait_for(lambda: not pods_of(kube, name), timeout=60, message=f"the pods of {name} to be deleted")


def container_of(obj):
    spec = obj["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    return spec["containers"][0]


def assert_container(c, name, image_prefix, env=None, ports=()):
    assert c["name"] == name
    assert c["image"].startswith(image_prefix), c["image"]
    want_env = [{"name": "METAPARTICLE_IN_CONTAINER", "value": "true"}]
    want_env += [{"name": k, "value": v} for k, v in sorted((env or {}).items())]
    assert c["env"] == want_env
    if ports:
        assert c["ports"] == [{"name": f"tcp-{p}", "containerPort": p, "protocol": "TCP"} for p in ports]
    else:
        assert "ports" not in c


# ---------------------------------------------------------------------------------------------
# Rendering (mp_containerize_render): no cluster, no registry
# ---------------------------------------------------------------------------------------------

def test_render_deployment_and_clusterip_service(render):
    out = render({"name": "web", "runner": "kubernetes", "repository": RENDER_REPO, "tag": "v1",
                  "ports": [8080, 9090], "replicas": 3, "env": {"B": "2", "A": "1"}})
    objs = out["kubernetes"]
    assert [o["kind"] for o in objs] == ["Service", "Deployment"]
    svc, dep = objs
    ref = f"{RENDER_REPO}/web:v1"
    assert out["image"]["reference"] == ref
    for o in objs:
        assert o["metadata"]["name"] == "web"
        assert o["metadata"]["labels"] == labels_for("web")
        assert "namespace" not in o["metadata"]  # the runner fills in the context's namespace
    assert svc["apiVersion"] == "v1"
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == labels_for("web")
    assert svc["spec"]["ports"] == [{"name": "tcp-8080", "protocol": "TCP", "port": 8080, "targetPort": 8080},
                                    {"name": "tcp-9090", "protocol": "TCP", "port": 9090, "targetPort": 9090}]
    assert dep["apiVersion"] == "apps/v1"
    assert dep["spec"]["replicas"] == 3
    assert dep["spec"]["selector"] == {"matchLabels": labels_for("web")}
    assert dep["spec"]["template"]["metadata"]["labels"] == labels_for("web")
    assert "restartPolicy" not in dep["spec"]["template"]["spec"]
    assert_container(container_of(dep), "web", ref, env={"A": "1", "B": "2"}, ports=(8080, 9090))


def test_render_public_is_a_loadbalancer(render):
    objs = render({"name": "pub", "runner": "metaparticle", "repository": RENDER_REPO, "ports": [80],
                   "public": True})["kubernetes"]
    assert [o["kind"] for o in objs] == ["Service", "Deployment"]
    assert objs[0]["spec"]["type"] == "LoadBalancer"
    assert objs[1]["spec"]["replicas"] == 1


def test_render_without_ports_has_no_service(render):
    objs = render({"name": "worker", "runner": "kubernetes", "repository": RENDER_REPO, "replicas": 2})["kubernetes"]
    assert [o["kind"] for o in objs] == ["Deployment"]
    assert objs[0]["metadata"]["labels"] == labels_for("worker")
    assert_container(container_of(objs[0]), "worker", f"{RENDER_REPO}/worker:latest")


def test_render_job(render):
    objs = render({"name": "batch", "runner": "kubernetes", "repository": RENDER_REPO, "jobSpec": {"count": 4},
                   "replicas": 7, "env": {"X": "y"}})["kubernetes"]
    assert [o["kind"] for o in objs] == ["Job"]
    job = objs[0]
    assert job["apiVersion"] == "batch/v1"
    assert job["metadata"]["labels"] == labels_for("batch")
    spec = job["spec"]
    assert spec["completions"] == 4 and spec["parallelism"] == 4
    assert spec["backoffLimit"] == 0
    assert "selector" not in spec  # the Job controller generates it
    assert spec["template"]["metadata"]["labels"] == labels_for("batch")
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert_container(container_of(job), "batch", f"{RENDER_REPO}/batch:latest", env={"X": "y"})


def test_render_job_with_ports_gets_a_service(render):
    objs = render({"name": "jobsvc", "runner": "kubernetes", "jobSpec": {"count": 1}, "ports": [7000]})["kubernetes"]
    assert [o["kind"] for o in objs] == ["Service", "Job"]
    assert objs[0]["spec"]["type"] == "ClusterIP"


def test_render_namespace_option(render):
    objs = render({"name": "nsd", "runner": "kubernetes", "namespace": "team-a", "ports": [1]})["kubernetes"]
    assert [o["metadata"]["namespace"] for o in objs] == ["team-a", "team-a"]


def test_render_shardspec(render):
    err = render({"name": "sh", "runner": "kubernetes", "shardSpec": {"shards": 3}}, expect_error=True)
    assert "MP_EINVAL" in err and "shardSpec" in err and "not implemented yet" in err
    # The docker runner's render does not depend on the Kubernetes shard pattern.
    out = render({"name": "sh", "shardSpec": {"shards": 3}})
    assert out["kubernetes"] == [] and len(out["docker"]) == 3


# ---------------------------------------------------------------------------------------------
# Preflight: failures before any image work
# ---------------------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_publish_is_required(run_app, tmp_path):
    app = run_app("run", {"name": "nopub", "runner": "kubernetes", "repository": RENDER_REPO})
    assert app.wait(60) == 3
    err = "\n".join(app.err)
    assert "MP_EINVAL" in err and '"publish": true' in err and "never pushed" in err, err


def test_unreachable_api_server_fails_before_the_build(run_app, registry, tmp_path):
    kc = kubefake.write_kubeconfig(str(tmp_path / "kubeconfig"), f"https://127.0.0.1:{free_port()}", "default",
                                   token="x")
    t0 = time.monotonic()
    app = run_app("run", kube_options(registry, "unreachable"), kubeconfig=kc)
    assert app.wait(60) == 3
    err = "\n".join(app.err)
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:" in err, err
    assert "nothing was built or pushed" in err, err
    assert not any("push" in line.lower() for line in app.err[:-1]), err  # no push progress
    if getattr(registry, "is_local", False):
        assert registry.tags("unreachable") == []
    assert time.monotonic() - t0 < 30


def test_no_cluster_configuration(run_app, registry, tmp_path):
    app = run_app("run", kube_options(registry, "nocfg"), kubeconfig=str(tmp_path / "missing-kubeconfig"))
    assert app.wait(60) == 3
    err = "\n".join(app.err)
    assert "MP_EINVAL" in err and "the Kubernetes runner needs a cluster to deploy to" in err and "KUBECONFIG" in err, err
    # containerize has no --kubeconfig option: the hint must not name one
    assert "--kubeconfig" not in err, err


def test_rejected_credentials(run_app, registry, kube, tmp_path):
    kube._fake_only()
    kc = kubefake.write_kubeconfig(str(tmp_path / "bad-kubeconfig"), kube.url, kube.namespace, kube.ca_file,
                                   token="wrong-token")
    app = run_app("run", kube_options(registry, "badtoken"), kubeconfig=kc)
    assert app.wait(60) == 3
    err = "\n".join(app.err)
    assert "401 Unauthorized" in err and "nothing was built or pushed" in err, err


def test_missing_namespace(run_app, registry, kube):
    app = run_app("run", kube_options(registry, "nons", namespace="mp-test-does-not-exist-x1"),
                  kubeconfig=kube.kubeconfig)
    assert app.wait(60) == 3
    err = "\n".join(app.err)
    assert 'namespace "mp-test-does-not-exist-x1" does not exist' in err and "kubectl create namespace" in err, err


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

def assert_applied_server_side(kube, resources):
    """Every object was written with server-side apply (PATCH apply-patch+yaml, fieldManager, force)."""
    if not kube.is_fake:
        return
    reqs = kube.requests_log()
    for path in resources:
        applies = [r for r in reqs if r["method"] == "PATCH" and r["path"].split("?")[0] == path]
        assert applies, f"no PATCH of {path}: {[(r['method'], r['path']) for r in reqs]}"
        for r in applies:
            assert r["content_type"].startswith("application/apply-patch+yaml"), r
            assert "fieldManager=metaparticle" in r["path"] and "force=true" in r["path"], r
        assert not [r for r in reqs if r["method"] in ("POST", "PUT") and r["path"].split("?")[0] in
                    (path, path.rsplit("/", 1)[0])], "objects must be applied, not created or replaced"


def expect_pod_logs(kube, app, pod):
    """A line of the pod's log shows up on kube_app's stdout, prefixed with the pod's name."""
    if kube.is_fake:
        kube.append_log(kube.namespace, pod, f"first line of {pod}\nsecond line of {pod}\n")
        app.wait_line("out", rf"^\[{pod}\] first line of {pod}$", 30)
        app.wait_line("out", rf"^\[{pod}\] second line of {pod}$", 30)
    else:
        app.wait_line("out", rf"^\[{pod}\] kube_app up on {pod}$", 120)


def test_run_deployment_streams_logs_and_deletes_on_sigint(run_app, registry, kube):
    app = run_app("run", kube_options(registry, "web", ports=[8080], replicas=2), kubeconfig=kube.kubeconfig)
    app.wait_line("err", r"deployment/web rolled out: 2/2 replica\(s\) ready", 240)

    st, dep = get(kube, "apps/v1", "deployments", "web")
    assert st == 200
    assert dep["metadata"]["labels"] == labels_for("web")
    assert dep["spec"]["replicas"] == 2
    c = container_of(dep)
    assert c["image"].startswith(f"{registry.repository}/web:latest@sha256:"), c["image"]
    assert {"name": "METAPARTICLE_IN_CONTAINER", "value": "true"} in c["env"]
    st, svc = get(kube, "v1", "services", "web")
    assert st == 200 and svc["spec"]["type"] == "ClusterIP"
    assert svc["metadata"]["labels"] == labels_for("web")
    if getattr(registry, "is_local", False):
        assert registry.tags("web") == ["latest"]
    assert_applied_server_side(kube, [kube.ns_path("v1", "services", "web"),
                                      kube.ns_path("apps/v1", "deployments", "web")])
    app.wait_line("err", r"service/web: ClusterIP", 30)

    pods = pods_of(kube, "web")
    assert len(pods) == 2
    for p in pods:
        expect_pod_logs(kube, app, p["metadata"]["name"])

    # A pod that starts later (scaled up behind the runner's back) is followed too.
    if kube.is_fake:
        st, _ = kube.patch(kube.ns_path("apps/v1", "deployments", "web"), {"spec": {"replicas": 3}})
        assert st == 200
        new = kube.wait_for(lambda: [p for p in pods_of(kube, "web")
                                     if p["metadata"]["name"] not in {q["metadata"]["name"] for q in pods}
                                     and (p.get("status") or {}).get("phase") == "Running"], 30)
        expect_pod_logs(kube, app, new[0]["metadata"]["name"])

    app.interrupt()
    assert app.wait(180) == 0, app.transcript()
    assert "kube_app: exit code 0" in app.err
    assert any("deleted deployment/web, service/web" in line for line in app.err), app.transcript()
    assert_gone(kube, "web")


def test_run_twice_updates_the_existing_objects(run_app, registry, kube):
    first = run_app("run", kube_options(registry, "twice", ports=[8080], replicas=1, keepRunning=True),
                    kubeconfig=kube.kubeconfig)
    first.wait_line("err", r"deployment/twice rolled out: 1/1", 240)
    first.wait_line("err", r"deployment/twice created", 5)
    first.interrupt()
    assert first.wait(120) == 0, first.transcript()
    assert any("keepRunning: leaving the objects" in line for line in first.err), first.transcript()
    st, dep1 = get(kube, "apps/v1", "deployments", "twice")
    assert st == 200, "keepRunning must leave the Deployment"
    assert get(kube, "v1", "services", "twice")[0] == 200

    # Second run: more replicas, no ports any more.
    second = run_app("run", kube_options(registry, "twice", replicas=2), kubeconfig=kube.kubeconfig)
    second.wait_line("err", r"deployment/twice rolled out: 2/2", 240)
    assert any("deleting service/twice left by an earlier run" in line for line in second.err), second.transcript()
    assert any("deployment/twice configured" in line for line in second.err), second.transcript()
    st, dep2 = get(kube, "apps/v1", "deployments", "twice")
    assert st == 200
    assert dep2["metadata"]["uid"] == dep1["metadata"]["uid"], "updated in place, not re-created"
    assert dep2["spec"]["replicas"] == 2
    assert "ports" not in container_of(dep2)
    assert get(kube, "v1", "services", "twice")[0] == 404
    assert_applied_server_side(kube, [kube.ns_path("apps/v1", "deployments", "twice")])
    second.interrupt()
    assert second.wait(180) == 0, second.transcript()
    assert_gone(kube, "twice")


def test_image_pull_failure_is_a_clear_error(run_app, registry, kube):
    kube._fake_only()  # the fake fails pulls of images named "fail-pull"
    app = run_app("run", kube_options(registry, "fail-pull", ports=[8080]), kubeconfig=kube.kubeconfig)
    assert app.wait(240) == 3, app.transcript()
    err = "\n".join(app.err)
    assert "containerize failed (MP_EREGISTRY)" in err, err
    assert f"the cluster cannot pull the image {registry.repository}/fail-pull:latest@sha256:" in err, err
    assert "ErrImagePull" in err and "imagePullSecrets" in err, err
    assert_gone(kube, "fail-pull")


def test_crash_loop_is_a_clear_error(run_app, registry, kube):
    # The fake crash-loops images named "crashloop"; a real cluster runs kube_app, which exits 1.
    app = run_app("run", kube_options(registry, "crashloop", env={"KUBE_APP_EXIT": "1"}), kubeconfig=kube.kubeconfig)
    assert app.wait(300) == 3, app.transcript()
    err = "\n".join(app.err)
    assert "containerize failed (MP_ERROR)" in err, err
    assert "pod crashloop-" in err and "is crash-looping (CrashLoopBackOff" in err, err
    assert "last exit code 1" in err and "Its last log lines:" in err, err
    if not kube.is_fake:
        assert "kube_app up on crashloop-" in err
    assert_gone(kube, "crashloop")


def test_job_succeeds(run_app, registry, kube):
    app = run_app("run", kube_options(registry, "batch", jobSpec={"count": 2}, env={"KUBE_APP_EXIT": "0"}),
                  kubeconfig=kube.kubeconfig)
    assert app.wait(300) == 0, app.transcript()
    assert any("job/batch completed: 2 of 2 succeeded" in line for line in app.err), app.transcript()
    assert "kube_app: exit code 0" in app.err
    assert_applied_server_side(kube, [kube.ns_path("batch/v1", "jobs", "batch")])
    if not kube.is_fake:
        assert len([line for line in app.out if line.startswith("[batch-") and "kube_app up on batch-" in line]) == 2
    assert_gone(kube, "batch")


def test_job_failure_exits_1(run_app, registry, kube):
    # The fake fails the pods of images named "crashloop"; on a real cluster kube_app exits 3.
    app = run_app("run", kube_options(registry, "crashloop-job", jobSpec={"count": 1}, env={"KUBE_APP_EXIT": "3"}),
                  kubeconfig=kube.kubeconfig)
    assert app.wait(300) == 1, app.transcript()
    assert any("job/crashloop-job failed" in line for line in app.err), app.transcript()
    assert "kube_app: exit code 1" in app.err
    assert_gone(kube, "crashloop-job")


def test_job_runs_again(run_app, registry, kube):
    """A second run of a job (left by keepRunning) deletes the finished Job and runs a new one."""
    opts = kube_options(registry, "again", jobSpec={"count": 1}, env={"KUBE_APP_EXIT": "0"}, keepRunning=True)
    first = run_app("run", opts, kubeconfig=kube.kubeconfig)
    assert first.wait(300) == 0, first.transcript()
    st, job1 = get(kube, "batch/v1", "jobs", "again")
    assert st == 200
    second = run_app("run", dict(opts, keepRunning=False), kubeconfig=kube.kubeconfig)
    assert second.wait(300) == 0, second.transcript()
    assert any("deleting job/again of an earlier run" in line for line in second.err), second.transcript()
    assert any("job/again completed: 1 of 1 succeeded" in line for line in second.err), second.transcript()
    assert_gone(kube, "again")


def test_objects_not_created_by_containerize_are_left_alone(run_app, registry, kube):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "taken", "labels": {"team": "x"}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"team": "x"}},
                    "template": {"metadata": {"labels": {"team": "x"}},
                                 "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}}}
    st, body = kube.post(kube.ns_path("apps/v1", "deployments"), dep)
    assert st == 201, body
    app = run_app("run", kube_options(registry, "taken"), kubeconfig=kube.kubeconfig)
    assert app.wait(120) == 3, app.transcript()
    err = "\n".join(app.err)
    assert "deployment/taken already exists in namespace" in err and "was not created by containerize" in err, err
    st, after = get(kube, "apps/v1", "deployments", "taken")
    assert st == 200 and after["metadata"]["labels"] == {"team": "x"}
    assert container_of(after)["image"] == "registry.k8s.io/pause:3.9"


# ---------------------------------------------------------------------------------------------
# dryRun: YAML for `kubectl apply -f -`, the image config in comments
# ---------------------------------------------------------------------------------------------


def dry_run_text(run_app, name, **kw):
    o = {"name": name, "runner": "kubernetes", "repository": RENDER_REPO, "ports": [8080], "replicas": 2,
         "dryRun": True, "quiet": True, "env": {"GREETING": "yes", "PORT": "8080"}}
    o.update(kw)
    app = run_app("run", o)
    assert app.wait(120) == 0, app.transcript()
    return "\n".join(app.out) + "\n"


def test_dry_run_prints_kubernetes_yaml_with_the_image_in_comments(run_app):
    yaml = pytest.importorskip("yaml")
    text = dry_run_text(run_app, "dryyaml")
    head = text[:text.index("\n---")]
    assert all(line.startswith("#") for line in head.splitlines()), head
    # the image config, as YAML inside the comments
    info = yaml.safe_load("\n".join(line[2:] for line in head.splitlines()[2:]))
    assert info["image"]["config"]["config"]["Entrypoint"][0].endswith("kube_app")
    assert info["image"]["reference"].startswith(RENDER_REPO + "/dryyaml:")
    assert [d["name"] for d in info["docker"]] == ["dryyaml-0", "dryyaml-1"]
    assert info["warnings"] == []
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert [d["kind"] for d in docs] == ["Service", "Deployment"]  # apply order
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"] == "dryyaml"
    env = container_of(docs[1])["env"]
    # strings that look like other types stay strings
    assert {"name": "GREETING", "value": "yes"} in env and {"name": "PORT", "value": "8080"} in env


def test_dry_run_yaml_is_accepted_by_kubectl(run_app, kube, tmp_path):
    import shutil
    import subprocess
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed")
    text = dry_run_text(run_app, "drykubectl")
    p = subprocess.run(["kubectl", "--kubeconfig", kube.kubeconfig, "apply", "--server-side", "--validate=false",
                        "-f", "-"], input=text.encode(), capture_output=True, timeout=120)
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert b"deployment.apps/drykubectl" in p.stdout and b"service/drykubectl" in p.stdout, p.stdout
    st, dep = get(kube, "apps/v1", "deployments", "drykubectl")
    assert st == 200 and dep["spec"]["replicas"] == 2
