"""Fixtures for the Kubernetes runner tests (containerize with "runner": "kubernetes").

Every test drives kube_app ($MP_KUBE_APP, built by CMake; ctest sets the variable), a small C
program that calls the real C API: `kube_app render` prints mp_containerize_render's JSON,
`kube_app run` runs mp_containerize; both take the options from $KUBE_APP_OPTIONS.

The cluster comes from tests/fakes/kubefake.kube_env: a real one when MP_TEST_KUBECONFIG names a
kubeconfig, else the fake API server (TLS + bearer token), always in a fresh namespace removed at
the end. Images are really built and pushed: to a docker-registry started here on 127.0.0.1 (a
random port), or, against a real cluster, to $MP_TEST_REGISTRY (a repository the cluster can pull
from). The fake does not run containers: it simulates pods from the image name ("fail-pull",
"crashloop"), and the tests add pod log lines through its control endpoint.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fakes"))
import kubefake  # noqa: E402


def app_binary():
    path = os.environ.get("MP_KUBE_APP")
    if not path:
        pytest.fail("set MP_KUBE_APP to the kube_app test program (ctest does this)", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"MP_KUBE_APP={path} is not an executable file", pytrace=False)
    return path


class Registry:
    """docker-registry on 127.0.0.1, random port, filesystem storage."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(self.dir, exist_ok=True)
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: "
                    f"{self.dir}/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n"
                    "  secret: mptest-secret\n")
        self.log_path = os.path.join(self.dir, "registry.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            with open(self.log_path, "rb") as f:
                raise RuntimeError("docker-registry did not start:\n" + f.read().decode(errors="replace"))
        self.repository = f"127.0.0.1:{self.port}/mptest"

    def tags(self, name):
        """The tags of repository mptest/<name> (empty when it was never pushed)."""
        import urllib.request
        import urllib.error
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/mptest/{name}/tags/list", timeout=10) as r:
                return json.loads(r.read()).get("tags") or []
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []
            raise

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def session_dir():
    d = tempfile.mkdtemp(prefix="mp-package-kube-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def registry(session_dir):
    """A repository prefix to publish to: $MP_TEST_REGISTRY, or a local docker-registry."""
    external = os.environ.get("MP_TEST_REGISTRY")
    if external:
        yield type("External", (), {"repository": external.rstrip("/"), "tags": None, "is_local": False})()
        return
    if os.environ.get("MP_TEST_KUBECONFIG"):
        pytest.skip("MP_TEST_KUBECONFIG is set but MP_TEST_REGISTRY is not: a real cluster cannot pull from a "
                    "registry on this machine's 127.0.0.1; set MP_TEST_REGISTRY to a repository it can pull from")
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed (Debian package docker-registry): the Kubernetes runner "
                    "pushes the image, so these tests need a registry")
    r = Registry(os.path.join(session_dir, "registry"))
    r.is_local = True
    yield r
    r.stop()


@pytest.fixture
def kube(tmp_path):
    env = kubefake.kube_env(tmp_path)
    try:
        yield env
    finally:
        env.stop()


class App:
    """A kube_app process with its stdout and stderr read into lists of lines by threads."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen([app_binary(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, env=env)
        self.out, self.err = [], []
        self.cond = threading.Condition()
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, stream, lines):
        for raw in iter(stream.readline, b""):
            with self.cond:
                lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_line(self, which, pattern, timeout=60):
        """The first line of `which` ("out"/"err") matching the regex `pattern`; fails on timeout or exit."""
        lines = self.out if which == "out" else self.err
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in lines:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None and all(not t.is_alive() for t in self.threads):
                    raise AssertionError(f"kube_app exited ({self.proc.returncode}) without printing /{pattern}/ "
                                         f"on std{which}\n{self.transcript()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching /{pattern}/ on std{which} within {timeout} s\n"
                                         f"{self.transcript()}")
                self.cond.wait(min(left, 0.2))

    def interrupt(self):
        self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout=120):
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"kube_app did not exit within {timeout} s\n{self.transcript()}")
        for t in self.threads:
            t.join(10)
        return code

    def transcript(self):
        with self.cond:
            return ("--- stdout ---\n" + "\n".join(self.out) + "\n--- stderr ---\n" + "\n".join(self.err))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def app_env(session_dir, tmp_path):
    """A function (options, kubeconfig=None, extra=None) -> environment for kube_app."""
    docker_cfg = os.path.join(session_dir, "dockercfg-empty")
    os.makedirs(docker_cfg, exist_ok=True)

    def make(options, kubeconfig=None, extra=None):
        env = {k: v for k, v in os.environ.items()
               if k not in ("METAPARTICLE_IN_CONTAINER", "METAPARTICLE_REGISTRY_USERNAME",
                            "METAPARTICLE_REGISTRY_PASSWORD", "KUBERNETES_SERVICE_HOST",
                            "KUBERNETES_SERVICE_PORT")}
        env["KUBE_APP_OPTIONS"] = json.dumps(options)
        # Layers are reused across the tests (the runtime layer is the slow one).
        env["METAPARTICLE_CACHE_DIR"] = os.path.join(session_dir, "layer-cache")
        # No credentials of the machine's user leak in.
        env["DOCKER_CONFIG"] = docker_cfg
        env["HOME"] = str(tmp_path)
        if kubeconfig:
            env["KUBECONFIG"] = kubeconfig
        else:
            env.pop("KUBECONFIG", None)
        env.update(extra or {})
        return env
    return make


@pytest.fixture
def run_app(app_env):
    """Start kube_app; every started process is killed at the end of the test."""
    started = []

    def start(mode, options, kubeconfig=None, extra=None):
        a = App([mode], app_env(options, kubeconfig, extra))
        started.append(a)
        return a
    yield start
    for a in started:
        a.kill()


@pytest.fixture
def render(app_env):
    """render(options) -> the mp_containerize_render JSON (fails the test on an error)."""
    def go(options, expect_error=False):
        p = subprocess.run([app_binary(), "render"], env=app_env(options), capture_output=True, timeout=120)
        if expect_error:
            assert p.returncode == 3, (p.returncode, p.stdout, p.stderr)
            return p.stderr.decode()
        assert p.returncode == 0, p.stderr.decode()
        return json.loads(p.stdout)
    return go
