"""containerize() for Python: options, render(), the inside-the-container
path, and end to end against real parts: a container engine (Podman's
Docker-compatible API, `podman system service`) and a registry
(`docker-registry`), each started here on a temporary directory / socket /
127.0.0.1 port and stopped at the end.

Tests that need the engine have "engine" in their names (ctest runs them as
`python_containerize`, the rest with `python_binding`); they skip, saying
why, when podman or runc are not installed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

import pytest

import metaparticle
from metaparticle import _package

from conftest import WAIT, _die_with_parent

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLE = REPO / "examples" / "python" / "containerize.py"
EXAMPLE_NAME = "containerize"  # the image / container name, from the script's name
INTERPRETER = os.path.realpath(sys.executable)
# Building an image, loading it into the engine and starting Python in two
# containers takes seconds; on a loaded machine much longer.
ENGINE_WAIT = 300.0


def run_python(script: Path, *args: str, env: Optional[Dict[str, str]] = None, cwd: Optional[Path] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), *args],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def env_of(config: dict) -> Dict[str, str]:
    return dict(e.split("=", 1) for e in config["config"]["Env"])


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


def test_options_python_names_map_to_seed_names():
    o = metaparticle.Options(ports=[8080], replicas=2, keep_running=True, dry_run=False,
                             shard_spec={"shards": 3, "url_pattern": "/(.*)"}, files=[("/a", "/b")],
                             working_dir=Path("/srv"), image_pull_secrets=["regcred"])
    assert o.to_dict() == {
        "ports": [8080],
        "replicas": 2,
        "keepRunning": True,
        "dryRun": False,
        "shardSpec": {"shards": 3, "urlPattern": "/(.*)"},
        "files": [{"src": "/a", "dest": "/b"}],
        "workingDir": "/srv",
        "imagePullSecrets": ["regcred"],
    }
    # seed names pass as they are; None means "not set"
    assert _package._seed_options({"keepRunning": True, "tag": None}, {"job_spec": {"count": 2}}) == {
        "keepRunning": True,
        "jobSpec": {"count": 2},
    }


def test_unknown_option_is_an_error_naming_it():
    with pytest.raises(metaparticle.InvalidArgumentError) as e:
        metaparticle.render({"ports": [8080], "replicaz": 2})
    assert '"replicaz"' in str(e.value)
    assert "unknown option" in str(e.value)
    assert e.value.code_name == "MP_EINVAL"
    assert isinstance(e.value, ValueError)

    # the decorator form reports it when main() is called (outside: before
    # anything is built)
    @metaparticle.containerize(ports=[8080], keep_runing=True)
    def main():
        raise AssertionError("main must not run outside a container")

    with pytest.raises(metaparticle.InvalidArgumentError, match='unknown option "keep_runing"'):
        main()


def test_invalid_option_values_are_named():
    with pytest.raises(metaparticle.InvalidArgumentError, match='"replicas" must be an integer'):
        metaparticle.render(replicas="two")
    with pytest.raises(metaparticle.InvalidArgumentError, match='"keepRunning" is given twice'):
        metaparticle.render({"keepRunning": True}, keep_running=False)
    with pytest.raises(metaparticle.InvalidArgumentError, match='"publish": true needs "repository"'):
        metaparticle.render(publish=True)
    with pytest.raises(TypeError, match='"env.A"'):
        metaparticle.render(env={"A": object()})
    with pytest.raises(TypeError):
        metaparticle.containerize(42, lambda: 0)
    with pytest.raises(TypeError, match="must be callable"):
        metaparticle.containerize({}, 42)


# ---------------------------------------------------------------------------
# What goes into the image of a Python program
# ---------------------------------------------------------------------------


def test_render_of_a_python_program(tmp_path):
    script = write(tmp_path / "app" / "web-app.py", """\
        import json, sys
        import metaparticle
        print(json.dumps(metaparticle.render({"ports": [8080, 9090], "replicas": 2, "env": {"GREETING": "hi"}})))
        """)
    p = run_python(script, "--flag", "x y", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    cfg = out["image"]["config"]
    # ENTRYPOINT: this interpreter (its real path), the script, its arguments
    assert cfg["config"]["Entrypoint"] == [INTERPRETER, str(script), "--flag", "x y"]
    env = env_of(cfg)
    assert env["METAPARTICLE_IN_CONTAINER"] == "true"
    assert env["GREETING"] == "hi"
    assert env["PYTHONUNBUFFERED"] == "1"
    # the metaparticle package is found in the image as here: its directory
    # is on PYTHONPATH unless it is a default site directory
    site_dir = str(Path(metaparticle.__file__).parent.parent)
    if site_dir in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        assert site_dir in env["PYTHONPATH"].split(os.pathsep)
    assert cfg["config"]["ExposedPorts"] == {"8080/tcp": {}, "9090/tcp": {}}
    assert cfg["config"]["Labels"]["io.metaparticle.name"] == "web-app"
    assert out["image"]["reference"] == "web-app:latest"
    assert [d["name"] for d in out["docker"]] == ["web-app-0", "web-app-1"]
    assert out["docker"][1]["body"]["HostConfig"]["PortBindings"]["9090/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": "9091"}]
    # Libraries, then the interpreter and standard library (from /usr or from
    # the interpreter's own installation: pyenv, conda, /usr/local), then
    # what pip installed when metaparticle itself comes from a site-packages,
    # then the app: an edit to the app rebuilds only the last, small layer.
    deps = any(part in ("site-packages", "dist-packages") for part in Path(metaparticle.__file__).parts)
    from_usr_deps = deps and str(Path(metaparticle.__file__).resolve()).startswith("/usr/")
    layers = ("runtime", "system") + (("dependencies",) if deps and not from_usr_deps else ()) + ("app",)
    assert [h["created_by"] for h in cfg["history"]] == [f"metaparticle containerize: {name} layer" for name in layers]
    assert len(out["image"]["manifest"]["layers"]) == len(layers)
    # the same keys from every binding: "warnings" is there even when empty
    assert isinstance(out["warnings"], list)
    # Deterministic: the same program gives the same image.
    again = json.loads(run_python(script, "--flag", "x y", cwd=tmp_path).stdout)
    assert again["image"]["digest"] == out["image"]["digest"]


def test_image_contents_of_a_python_program(tmp_path):
    """The include list: interpreter, pruned stdlib, imported packages (also
    imports inside functions), the script's directory."""
    libs = tmp_path / "libs"  # a PYTHONPATH entry, like a virtual environment's site-packages
    write(libs / "eager" / "__init__.py", "VALUE = 1\n")
    write(libs / "eager" / "__pycache__" / "x.cpython-311.pyc", "junk")
    write(libs / "lazydep.py", "VALUE = 2\n")
    write(libs / "unused_pkg" / "__init__.py", "")
    write(libs / "eager-1.0.dist-info" / "RECORD", "eager/__init__.py,,\neager-1.0.dist-info/RECORD,,\n")
    write(libs / "unused_pkg-1.0.dist-info" / "top_level.txt", "unused_pkg\n")
    app = tmp_path / "app"
    write(app / "helper.py", "X = 1\n")
    write(app / ".git" / "config", "")
    script = write(app / "main.py", """\
        import dataclasses, json, sys
        import eager, helper
        from metaparticle import _package

        def main():
            import lazydep  # only imported when main runs: found by scanning the code
            return lazydep.VALUE

        print(json.dumps(dataclasses.asdict(_package._python_app(False))))
        """)
    env = {"PYTHONPATH": os.pathsep.join([str(libs), os.environ.get("PYTHONPATH", "")])}
    p = run_python(script, "arg", env=env)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    inc = got["include"]
    assert got["command"] == [INTERPRETER, str(script), "arg"]
    assert got["name"] == "main"
    assert INTERPRETER in inc
    # the script's directory, without VCS data
    assert str(app / "main.py") in inc and str(app / "helper.py") in inc
    assert not any(".git" in p for p in inc)
    # imported packages (whole, less bytecode caches), imported later, their metadata
    assert str(libs / "eager" / "__init__.py") in inc
    assert not any("__pycache__" in p for p in inc)
    assert str(libs / "lazydep.py") in inc
    assert str(libs / "eager-1.0.dist-info") in inc
    assert not any("unused_pkg" in p for p in inc)
    assert got["pythonpath"][0] == str(libs)
    pkg_dir = str(Path(metaparticle.__file__).parent)
    assert pkg_dir in inc  # kept whole: it holds the native module and libmetaparticle
    # the standard library, less tests, IDLE, tkinter, bundled wheels, build files
    import sysconfig

    stdlib = sysconfig.get_paths()["stdlib"]
    assert os.path.join(stdlib, "os.py") in inc
    assert any(p.startswith(os.path.join(stdlib, "encodings") + "/") for p in inc)
    in_stdlib = [p[len(stdlib):] for p in inc if p.startswith(stdlib + "/")]
    for pruned in ("/test/", "/idlelib", "/tkinter", "/ensurepip", "/config-", "/site-packages"):
        assert not any(p.startswith(pruned) or pruned + "/" in p for p in in_stdlib), pruned
    dynload = [p for p in sys.path if p.endswith("lib-dynload")]
    if dynload:
        assert dynload[0] in inc  # whole: extension modules' libraries are resolved leniently


def test_run_as_module(tmp_path):
    write(tmp_path / "svc" / "__init__.py", "")
    write(tmp_path / "svc" / "server.py", """\
        import dataclasses, json
        from metaparticle import _package
        print(json.dumps(dataclasses.asdict(_package._python_app(False))))
        """)
    p = subprocess.run([sys.executable, "-m", "svc.server", "--port", "1"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    assert got["command"] == [INTERPRETER, "-m", "svc.server", "--port", "1"]
    assert got["name"] == "server"
    assert str(tmp_path / "svc") in got["include"]  # the whole package (nothing to prune in it)
    assert str(tmp_path) in got["pythonpath"]  # -m found it through the working directory


def test_without_a_script_command_is_required():
    p = subprocess.run([sys.executable, "-c", "import metaparticle; metaparticle.render()"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode != 0
    assert "no main script" in p.stderr and '"command"' in p.stderr


# ---------------------------------------------------------------------------
# Inside the container: just run main
# ---------------------------------------------------------------------------


def test_inside_a_container_main_runs(monkeypatch):
    monkeypatch.setenv("METAPARTICLE_IN_CONTAINER", "true")
    assert metaparticle.in_container()
    assert metaparticle.containerize({"ports": [8080], "replicas": 3}, lambda: 7) == 7
    assert metaparticle.containerize({}, lambda: None) == 0

    @metaparticle.containerize(ports=[8080])
    def main(a, b=2):
        return a + b

    assert main(1, b=4) == 5
    assert main.__name__ == "main"

    @metaparticle.containerize
    def bare():
        return 3

    assert bare() == 3

    with pytest.raises(ValueError, match="boom"):
        metaparticle.containerize({}, lambda: (_ for _ in ()).throw(ValueError("boom")))
    with pytest.raises(TypeError, match="must return an int"):
        metaparticle.containerize({}, lambda: "done")
    # options are still validated inside
    with pytest.raises(metaparticle.InvalidArgumentError, match='"bogus"'):
        metaparticle.containerize({"bogus": 1}, lambda: 0)

    monkeypatch.setenv("METAPARTICLE_IN_CONTAINER", "false")
    assert not metaparticle.in_container()


def test_inside_a_container_process(tmp_path):
    script = write(tmp_path / "inside.py", """\
        import sys
        import metaparticle

        @metaparticle.containerize(ports=[8080], replicas=2)
        def main():
            print("main ran with", sys.argv[1:])
            if sys.argv[1:] == ["fail"]:
                raise RuntimeError("main failed")
            return 3

        sys.exit(main())
        """)
    p = run_python(script, "x", env={"METAPARTICLE_IN_CONTAINER": "true"})
    assert p.returncode == 3, p.stderr
    assert p.stdout == "main ran with ['x']\n"
    p = run_python(script, "fail", env={"METAPARTICLE_IN_CONTAINER": "1"})
    assert p.returncode == 1
    assert "RuntimeError: main failed" in p.stderr


def test_dry_run_prints_instead_of_acting(tmp_path):
    script = write(tmp_path / "dry.py", """\
        import sys
        import metaparticle
        sys.exit(metaparticle.containerize({"ports": [8080], "dry_run": True, "quiet": True},
                                           lambda: print("main must not run here")))
        """)
    # an unreachable engine: a dry run must not need one
    p = run_python(script, env={"METAPARTICLE_IN_CONTAINER": "false", "DOCKER_HOST": "unix:///nonexistent.sock"})
    assert p.returncode == 0, p.stderr
    # YAML for `kubectl apply -f -`: the image and the Docker containers in
    # the leading comment block, then one document per Kubernetes object
    yaml = pytest.importorskip("yaml")
    head, _, objects = p.stdout.partition("\n---\n")
    lines = head.splitlines()
    assert all(line.startswith("#") for line in lines), head
    out = yaml.safe_load("\n".join(line[2:] for line in lines[2:]))
    assert out["image"]["config"]["config"]["Entrypoint"] == [INTERPRETER, str(script)]
    assert [d["name"] for d in out["docker"]] == ["dry-0"]
    kinds = [d["kind"] for d in yaml.safe_load_all("---\n" + objects) if d]
    assert kinds == ["Service", "Deployment"]


def test_unreachable_docker_host_says_what_to_do(tmp_path):
    script = write(tmp_path / "noengine.py", """\
        import sys
        import metaparticle
        try:
            metaparticle.containerize({"ports": [8080]}, lambda: 0)
        except metaparticle.ContainerEngineError as e:
            print(e.code_name, e)
            sys.exit(0)
        sys.exit("no ContainerEngineError")
        """)
    p = run_python(script, env={"DOCKER_HOST": f"unix://{tmp_path}/no-such.sock",
                                "METAPARTICLE_CACHE_DIR": str(tmp_path / "cache")})
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("MP_EENGINE ")
    assert "DOCKER_HOST" in p.stdout
    assert "layer runtime" not in p.stderr  # reported before building anything


# ---------------------------------------------------------------------------
# End to end: Podman + docker-registry
# ---------------------------------------------------------------------------


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 60) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def have(program: str) -> bool:
    return shutil.which(program) is not None


class Registry:
    """docker-registry on 127.0.0.1 (a port it picks), filesystem storage."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        (root / "config.yml").write_text(
            "version: 0.1\nlog:\n  level: info\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:0\n  secret: mptest-secret\n"
        )
        self.log = root / "registry.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(root / "config.yml")], stdout=log,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + WAIT
        while True:
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log.read_text())
            if m:
                self.port = int(m.group(1))
                return
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"docker-registry did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def manifest_digest(self, repo: str, tag: str) -> Optional[str]:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v2/{repo}/manifests/{tag}", method="HEAD",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.headers.get("Docker-Content-Digest")
        except urllib.error.HTTPError:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Podman:
    """`podman system service` on a socket in a temporary directory, with its
    own configuration and storage (the settings of
    tests/package/test_package_podman.cpp, the test environment of the project specification): runtime runc,
    cgroupfs, explicit ulimits, events to a file, vfs storage. Registries in
    `insecure` are pulled from over plain HTTP."""

    def __init__(self, insecure: List[str]) -> None:
        self.dir = tempfile.mkdtemp(prefix="mp-pypod-")  # short: the socket path must fit in 108 bytes
        d = self.dir
        Path(d, "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            f'events_logfile_path = "{d}/events.log"\n'
            f'tmp_dir = "{d}/tmp"\n'
            "[network]\n"
            f'network_config_dir = "{d}/networks"\n'
        )
        Path(d, "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{d}/root"\nrunroot = "{d}/run"\n'
        )
        Path(d, "registries.conf").write_text(
            "unqualified-search-registries = []\n"
            + "".join(f'[[registry]]\nlocation = "{r}"\ninsecure = true\n' for r in insecure)
        )
        self.sock = f"{d}/podman.sock"
        self.env = {
            "CONTAINERS_CONF": f"{d}/containers.conf",
            "CONTAINERS_STORAGE_CONF": f"{d}/storage.conf",
            "CONTAINERS_REGISTRIES_CONF": f"{d}/registries.conf",
        }
        with open(f"{d}/podman.log", "w") as log:
            self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{self.sock}"],
                                         env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 20
        while True:
            try:
                if self.request("GET", "/_ping")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                log_text = Path(d, "podman.log").read_text()
                self.stop()
                raise RuntimeError(f"podman service did not come up:\n{log_text}")
            time.sleep(0.1)

    def request(self, method: str, path: str):
        c = UnixHTTPConnection(self.sock)
        try:
            c.request(method, "/v1.41" + path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def containers(self, name: Optional[str] = None) -> List[dict]:
        """Containers made by containerize (for the app `name`, or any)."""
        label = "io.metaparticle.name" + (f"={name}" if name else "")
        filters = urllib.parse.quote(json.dumps({"label": [label]}))
        status, body = self.request("GET", f"/containers/json?all=1&filters={filters}")
        assert status == 200, body
        return json.loads(body)

    def stop(self) -> None:
        try:
            for c in self.containers():
                self.request("DELETE", f"/containers/{c['Id']}?force=1")
        except Exception:  # noqa: BLE001 - best effort before stopping the service
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory):
    """A registry and a Podman service that may pull from it; yields
    (podman, registry or None, environment for the example)."""
    if not (have("podman") and have("runc")):
        pytest.skip("podman/runc are not installed (apt-get install podman runc)")
    registry = Registry(tmp_path_factory.mktemp("registry")) if have("docker-registry") else None
    try:
        podman = Podman([f"127.0.0.1:{registry.port}"] if registry else [])
    except Exception:
        if registry:
            registry.stop()
        raise
    cache = tmp_path_factory.mktemp("layer-cache")
    env = {"DOCKER_HOST": f"unix://{podman.sock}", "METAPARTICLE_CACHE_DIR": str(cache)}
    yield podman, registry, env
    podman.stop()
    if registry:
        registry.stop()


def free_port_range(n: int) -> int:
    """A port p such that p .. p+n-1 are free on 127.0.0.1 now."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        socks = []
        try:
            for i in range(n):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free port range")


class Example:
    """examples/python/containerize.py (or another script) running outside,
    its output collected line by line."""

    def __init__(self, args: List[str], env: Dict[str, str], script: Path = EXAMPLE) -> None:
        self.proc = subprocess.Popen([sys.executable, str(script), *args], env={**os.environ, **env},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     preexec_fn=_die_with_parent)
        self.out: List[str] = []
        self.err: List[str] = []
        self._cv = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self._readers:
            t.start()

    def _read(self, stream, into: List[str]) -> None:
        for line in stream:
            with self._cv:
                into.append(line.rstrip("\n"))
                self._cv.notify_all()

    def expect(self, line: str, timeout: float = ENGINE_WAIT, stream: Optional[List[str]] = None) -> None:
        """Wait until `line` was printed on stdout (or `stream`)."""
        lines = self.out if stream is None else stream
        deadline = time.monotonic() + timeout
        with self._cv:
            while line not in lines:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"never printed {line!r}\nstdout:\n" + "\n".join(self.out) +
                                         "\nstderr:\n" + "\n".join(self.err))
                self._cv.wait(min(left, 0.2))

    def finish(self, timeout: float = ENGINE_WAIT) -> int:
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(10)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def http_get(port: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_engine_two_replicas_stream_serve_and_tear_down(engine_env):
    podman, _, env = engine_env
    port = free_port_range(2)
    ex = Example([str(port), "2"], env)
    try:
        # Each replica's output comes back prefixed with its name: the image
        # really runs Python, from nothing but the image.
        for i in range(2):
            ex.expect(f"[{EXAMPLE_NAME}-{i}] hello from {EXAMPLE_NAME}-{i}, serving on port {port}")
        assert http_get(port) == f"hello from {EXAMPLE_NAME}-0\n"
        assert http_get(port + 1) == f"hello from {EXAMPLE_NAME}-1\n"
        ex.expect(f"[{EXAMPLE_NAME}-1] {EXAMPLE_NAME}-1 answered /")
        assert len(podman.containers(EXAMPLE_NAME)) == 2

        ex.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert ex.finish() == 0, "\n".join(ex.err)
    finally:
        ex.kill()
    err = "\n".join(ex.err)
    # SIGTERM reached main() in both replicas (their `finally` ran) ...
    for i in range(2):
        assert f"[{EXAMPLE_NAME}-{i}] {EXAMPLE_NAME}-{i} stopping" in ex.out, err
    # ... and nothing is left behind
    assert "removed 2 container(s)" in err
    assert podman.containers(EXAMPLE_NAME) == []
    assert "Traceback" not in err


def test_engine_second_ctrl_c_ends_the_process_at_once(engine_env, tmp_path):
    """The first Ctrl-C starts the teardown; a second one ends the program at
    once, as it does a C program: the way out of a stuck teardown. (Python's
    own handler would only note it until the C teardown returned.)"""
    podman, _, env = engine_env
    script = write(tmp_path / "stubborn.py", """\
        import signal, sys, time
        import metaparticle

        def main():
            # ignores `docker stop`: the teardown waits out the grace period
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("stubborn replica up")
            while True:
                time.sleep(1)

        sys.exit(metaparticle.containerize({"name": "stubborn"}, main))
        """)
    ex = Example([], env, script=script)
    try:
        ex.expect("[stubborn-0] stubborn replica up")
        ex.proc.send_signal(signal.SIGINT)
        ex.expect("containerize: interrupted: stopping and removing the containers", stream=ex.err)
        start = time.monotonic()
        ex.proc.send_signal(signal.SIGINT)
        assert ex.finish() == -signal.SIGINT, "\n".join(ex.err)
        # well before the engine's 5 s grace period would have ended the teardown
        assert time.monotonic() - start < 3
        assert "removed 1 container(s)" not in "\n".join(ex.err)
    finally:
        ex.kill()
        for c in podman.containers("stubborn"):  # left running: that is the point
            podman.request("DELETE", f"/containers/{c['Id']}?force=1")


def test_engine_publish_then_run_from_the_registry(engine_env):
    podman, registry, env = engine_env
    if registry is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    port = free_port_range(1)
    repo = f"127.0.0.1:{registry.port}/team"
    args = [str(port), "1", "--repository", repo, "--publish"]
    ex = Example(args, env)
    try:
        ex.expect(f"[{EXAMPLE_NAME}-0] hello from {EXAMPLE_NAME}-0, serving on port {port}")
        assert http_get(port) == f"hello from {EXAMPLE_NAME}-0\n"
        ex.proc.send_signal(signal.SIGTERM)  # SIGTERM tears down like Ctrl-C
        assert ex.finish() == 0, "\n".join(ex.err)
    finally:
        ex.kill()
    err = "\n".join(ex.err)
    assert f"pulling {repo}/{EXAMPLE_NAME}:latest" in err
    assert podman.containers(EXAMPLE_NAME) == []
    # The registry holds the manifest that was built and pushed.
    pushed = re.search(r"manifest (sha256:[0-9a-f]{64}) -> " + re.escape(f"{repo}/{EXAMPLE_NAME}:latest"), err)
    assert pushed, err
    assert registry.manifest_digest(f"team/{EXAMPLE_NAME}", "latest") == pushed.group(1)


def test_engine_job_exit_code_and_other_threads_run(engine_env, tmp_path):
    """A job (jobSpec): containerize() returns when the instances finish, with
    their exit code. Meanwhile the GIL is released: other threads run."""
    podman, _, env = engine_env
    script = write(tmp_path / "job.py", """\
        import socket, sys, threading, time
        import metaparticle

        ticks = 0

        def tick():
            global ticks
            while True:
                ticks += 1
                time.sleep(0.01)

        threading.Thread(target=tick, daemon=True).start()

        def main():
            print("job ran on", socket.gethostname())
            return 3

        start, before = time.monotonic(), ticks
        rc = metaparticle.containerize({"job_spec": {"count": 2}, "name": "pyjob"}, main)
        print(f"containerize returned {rc} after {time.monotonic() - start:.1f} s, {ticks - before} ticks",
              file=sys.stderr)
        sys.exit(rc)
        """)
    p = run_python(script, env=env, timeout=ENGINE_WAIT)
    assert p.returncode == 3, p.stdout + p.stderr
    for i in range(2):
        assert f"[pyjob-{i}] job ran on pyjob-{i}" in p.stdout.splitlines()
    m = re.search(r"containerize returned 3 after ([0-9.]+) s, (\d+) ticks", p.stderr)
    assert m, p.stderr
    # the ticker thread ran all along (it would be stuck had the GIL been held)
    assert int(m.group(2)) >= 0.25 * float(m.group(1)) / 0.01, m.group(0)
    assert podman.containers("pyjob") == []
