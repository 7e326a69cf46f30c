"""Test helpers for Kubernetes tests: start the fake API server, or use a real cluster.

Usage in a test module / conftest (standard library + PyYAML, /usr/bin/python3):

    import sys, os
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fakes"))
    import kubefake

    @pytest.fixture
    def kube(tmp_path):
        with kubefake.kube_env(tmp_path) as env:
            yield env

kube_env(tmp_path) returns an environment object (the same interface either way):
  * MP_TEST_KUBECONFIG set -> a RealCluster for that kubeconfig's current context;
  * otherwise              -> a Fake: fake_kube_apiserver.py started as a subprocess
                              with TLS + bearer token.
In both cases a fresh namespace "mp-test-<random>" is created, env.namespace names it,
env.kubeconfig is a kubeconfig file whose context uses it, and env.stop() (or leaving the
with block) deletes it (and stops the fake).

Environment attributes / methods (Fake and RealCluster):
  url, kubeconfig (path), namespace, token (or None), ca_file (or None),
  client_cert_file / client_key_file (or None), is_fake (bool)
  request(method, path, body=None, content_type="application/json", headers=None, timeout=30)
      -> (status, parsed JSON or text)   [body: dict/list -> JSON; str/bytes sent as is]
  get/post/put/patch/delete(path, ...) shortcuts for request()
  ns_path(api_version, resource, name=None, namespace=None)
      -> "/api/v1/namespaces/<ns>/<resource>[/<name>]" or "/apis/<g>/<v>/namespaces/..."
  watch(path, **params) -> WatchStream (next_event(timeout), events(n, timeout), close())
  open_stream(path) -> WatchStream (raw lines via next_line(timeout))
  wait_for(predicate, timeout=10, interval=0.05, message="") -> predicate's truthy value
  create_crd(crd) -> CRD as returned once Established (waits)
  stop()
Fake-only (RealCluster calls pytest.skip): compact(), fail(count, code, path_contains="",
  method="", delay=0, drop=False, probability=1), clear_failures(), append_log(namespace,
  pod, text), requests_log(), reset_requests(), restart(sigkill=True) (same port; pass
  extra_args=["--state-file", F] to start() for the objects to survive it).

start(tmpdir, tls=True, token="test-token", client_cert=False, namespace=None) -> Fake
  starts the fake without creating a namespace (namespace defaults to "default"; it is
  the kubeconfig context namespace). client_cert=True authenticates with a client
  certificate instead of the token (token=None then) - the server gets --client-ca.
make_certs(dir) -> dict with paths ca, ca_key, server_cert, server_key, client_cert,
  client_key (openssl CLI; server SAN: IP 127.0.0.1, DNS localhost).
"""

import base64
import http.client
import json
import os
import queue
import random
import shutil
import ssl
import string
import subprocess
import threading
import time
import urllib.parse

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "fake_kube_apiserver.py")
PYTHON = "/usr/bin/python3"


# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------

def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


CERT_FILES = {"ca": "ca.crt", "ca_key": "ca.key", "server_cert": "server.crt", "server_key": "server.key",
              "client_cert": "client.crt", "client_key": "client.key"}
_cert_cache = {}
_cert_lock = threading.Lock()


def make_certs(directory):
    """CA, server certificate (127.0.0.1 + localhost) and client certificate, signed by the CA.

    RSA key generation is slow on a loaded machine, so the first set made in this process is
    copied into later directories."""
    d = os.fspath(directory)
    os.makedirs(d, exist_ok=True)
    files = {k: os.path.join(d, v) for k, v in CERT_FILES.items()}
    if all(os.path.exists(f) for f in files.values()):
        return files
    with _cert_lock:
        if _cert_cache:
            for k, f in files.items():
                shutil.copyfile(_cert_cache[k], f)
            os.chmod(files["ca_key"], 0o600)
            return files
        _generate_certs(d)
        _cert_cache.update(files)
    return files


def _generate_certs(d):
    key = ["-newkey", "rsa:2048", "-nodes"]
    _openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
             "-subj", "/CN=fake-kube-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n")
    for who, subj in (("server", "/CN=127.0.0.1"), ("client", "/O=system:masters/CN=test-user")):
        _openssl("req", *key, "-keyout", f"{who}.key", "-out", f"{who}.csr", "-subj", subj, cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.crt", "-days", "3650", "-extfile", f"{who}.ext", cwd=d)


def _b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def write_kubeconfig(path, url, namespace, ca_file=None, token=None, client_cert=None, client_key=None,
                     insecure=False):
    cluster = {"server": url}
    if ca_file:
        cluster["certificate-authority-data"] = _b64file(ca_file)
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    user = {}
    if token:
        user["token"] = token
    if client_cert:
        user["client-certificate-data"] = _b64file(client_cert)
        user["client-key-data"] = _b64file(client_key)
    cfg = {"apiVersion": "v1", "kind": "Config", "preferences": {},
           "clusters": [{"name": "mp-test", "cluster": cluster}],
           "users": [{"name": "mp-test-user", "user": user}],
           "contexts": [{"name": "mp-test", "context": {"cluster": "mp-test", "user": "mp-test-user",
                                                        "namespace": namespace}}],
           "current-context": "mp-test"}
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, default_flow_style=False)
    return path


def random_namespace(prefix="mp-test"):
    return f"{prefix}-" + "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(8))


# ---------------------------------------------------------------------------
# Streams
# ---------------------------------------------------------------------------

class WatchStream:
    """A streaming GET (watch or log follow) read by a background thread into a queue."""

    def __init__(self, conn, resp):
        self.conn = conn
        self.resp = resp
        self.status = resp.status
        self.lines = queue.Queue()
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                self.lines.put(line.decode("utf-8", "replace"))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # closed by us (close()) or by the server
        finally:
            self.ended.set()
            self.lines.put(None)

    def next_line(self, timeout=10):
        """Next line (str, with newline), or None when the stream ended. Raises queue.Empty on timeout."""
        line = self.lines.get(timeout=timeout)
        if line is None:
            self.lines.put(None)  # keep reporting the end
        return line

    def next_event(self, timeout=10):
        """Next watch event as a dict, None when the stream ended; raises TimeoutError on timeout."""
        while True:
            try:
                line = self.next_line(timeout)
            except queue.Empty:
                raise TimeoutError(f"no watch event within {timeout}s")
            if line is None:
                return None
            if line.strip():
                return json.loads(line)

    def events(self, n, timeout=10):
        """The next n events (fewer if the stream ends)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.next_event(max(0.01, deadline - time.monotonic()))
            if ev is None:
                break
            out.append(ev)
        return out

    def wait_end(self, timeout=10):
        return self.ended.wait(timeout)

    def close(self):
        try:
            self.conn.sock and self.conn.sock.shutdown(2)
        except OSError:
            pass
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------
# Environments
# ---------------------------------------------------------------------------

class _Env:
    url = None
    token = None
    ca_file = None
    client_cert_file = None
    client_key_file = None
    insecure = False
    namespace = "default"
    is_fake = False
    _created_namespace = None

    def _connection(self, timeout):
        u = urllib.parse.urlsplit(self.url)
        if u.scheme == "https":
            ctx = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else ssl.create_default_context()
            if self.insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.client_cert_file:
                ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
            return http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=timeout, context=ctx)
        return http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)

    def _headers(self, content_type, body, headers):
        h = {"Accept": "application/json", "User-Agent": "mp-kube-tests/1.0"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            h["Content-Type"] = content_type
        h.update(headers or {})
        return h

    @staticmethod
    def _encode(body):
        if body is None or isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        return json.dumps(body).encode()

    def request(self, method, path, body=None, content_type="application/json", headers=None, timeout=30):
        """One request; returns (status, parsed JSON or text)."""
        conn = self._connection(timeout)
        try:
            conn.request(method, path, body=self._encode(body), headers=self._headers(content_type, body, headers))
            resp = conn.getresponse()
            data = resp.read()
            ctype = resp.getheader("Content-Type", "")
        finally:
            conn.close()
        text = data.decode("utf-8", "replace")
        if "json" in ctype:
            try:
                return resp.status, json.loads(text)
            except ValueError:
                pass
        return resp.status, text

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def patch(self, path, body, content_type="application/merge-patch+json", **kw):
        return self.request("PATCH", path, body, content_type=content_type, **kw)

    def delete(self, path, body=None, **kw):
        return self.request("DELETE", path, body, **kw)

    def ns_path(self, api_version, resource, name=None, namespace=None):
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        p = f"{base}/namespaces/{namespace or self.namespace}/{resource}"
        return p + (f"/{name}" if name else "")

    def open_stream(self, path, headers=None, timeout=60):
        """A streaming GET (watch / log follow); the caller closes it."""
        conn = self._connection(timeout)
        conn.request("GET", path, headers=self._headers(None, None, headers))
        resp = conn.getresponse()
        return WatchStream(conn, resp)

    def watch(self, path, timeout=60, **params):
        """Watch a list path: watch(path, resourceVersion="123", labelSelector="a=b")."""
        params = {"watch": "true", **{k: str(v) for k, v in params.items() if v is not None}}
        sep = "&" if "?" in path else "?"
        return self.open_stream(path + sep + urllib.parse.urlencode(params), timeout=timeout)

    @staticmethod
    def wait_for(predicate, timeout=10, interval=0.05, message=""):
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
            time.sleep(interval)

    def create_crd(self, crd, timeout=30):
        """Create (or reuse) a CRD and wait for Established; returns the CRD object."""
        name = crd["metadata"]["name"]
        status, body = self.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        if status not in (201, 409):
            raise AssertionError(f"creating CRD {name}: {status} {body}")

        def established():
            st, obj = self.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            if st == 200 and any(c.get("type") == "Established" and c.get("status") == "True"
                                 for c in (obj.get("status") or {}).get("conditions") or []):
                return obj
            return None
        return self.wait_for(established, timeout, 0.05, f"CRD {name} Established")

    def create_namespace(self, name):
        status, body = self.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                        "metadata": {"name": name}})
        if status != 201:
            raise AssertionError(f"creating namespace {name}: {status} {body}")
        self._created_namespace = name
        self.namespace = name

    def delete_namespace(self):
        if self._created_namespace:
            try:
                self.delete(f"/api/v1/namespaces/{self._created_namespace}", timeout=10)
            except OSError:
                pass
            self._created_namespace = None

    # fake-only helpers ------------------------------------------------------------
    def _fake_only(self):
        if not self.is_fake:
            import pytest
            pytest.skip("needs the fake API server (control endpoints)")

    def compact(self):
        """Compact the watch history to now and close every open watch."""
        self._fake_only()
        return self.request("POST", "/fake/compact")

    def fail(self, count=1, code=500, path_contains="", method="", message="", delay=0, drop=False,
             probability=1):
        """Make the next `count` matching requests fail with `code` (and a Status body).

        delay: wait that many seconds first (code=0: then answer normally); drop: close the
        connection without an answer instead; probability: each matching request fires the
        rule with this probability."""
        self._fake_only()
        q = urllib.parse.urlencode({"count": count, "code": code, "path_contains": path_contains,
                                    "method": method, "message": message, "delay": delay,
                                    "drop": "1" if drop else "", "probability": probability})
        return self.request("POST", "/fake/fail?" + q)

    def clear_failures(self):
        """Forget every fail() rule not used up yet."""
        self._fake_only()
        return self.request("POST", "/fake/clear-failures")

    def append_log(self, namespace, pod, text):
        self._fake_only()
        return self.request("POST", f"/fake/logs/{namespace}/{pod}", text.encode() if isinstance(text, str)
                            else text, content_type="text/plain")

    def requests_log(self):
        """Recent requests: list of {method, path, content_type, status, user_agent, time}."""
        self._fake_only()
        return self.request("GET", "/fake/requests")[1]["requests"]

    def reset_requests(self):
        self._fake_only()
        return self.request("POST", "/fake/reset-requests")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Fake(_Env):
    """The fake API server running as a subprocess."""
    is_fake = True

    def __init__(self, tmpdir, tls=True, token="test-token", client_cert=False, namespace=None, extra_args=()):
        self.dir = os.fspath(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        self.token = None if client_cert else token
        self.namespace = namespace or "default"
        self.certs = make_certs(os.path.join(self.dir, "certs")) if tls or client_cert else None
        args = [PYTHON, SERVER, "--exit-on-stdin-eof"]
        if self.certs:
            args += ["--tls-cert", self.certs["server_cert"], "--tls-key", self.certs["server_key"]]
            self.ca_file = self.certs["ca"]
        if client_cert:
            args += ["--client-ca", self.certs["ca"]]
            self.client_cert_file, self.client_key_file = self.certs["client_cert"], self.certs["client_key"]
            if token:
                args += ["--token", token]
        elif token:
            args += ["--token", token]
        args += list(extra_args)
        self._args = args
        self.stderr_path = os.path.join(self.dir, "fake-kube-apiserver.stderr")
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self.url = self._wait_listening(20)
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.write_kubeconfig()

    def restart(self, sigkill=True):
        """Kill the server (SIGKILL, or SIGTERM with sigkill=False) and start it again on the
        same address. Objects survive only with --state-file in extra_args."""
        if self.proc.poll() is None:
            self.proc.kill() if sigkill else self.proc.terminate()
        self.proc.wait(10)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        port = urllib.parse.urlsplit(self.url).port
        self.proc = subprocess.Popen(self._args + ["--port", str(port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr)
        url = self._wait_listening(20)
        assert url == self.url, f"restarted fake API server listens on {url}, not {self.url}"

    def _wait_listening(self, timeout):
        result = {}

        def read():
            line = self.proc.stdout.readline().decode().strip()
            result["line"] = line
        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        line = result.get("line", "")
        if not line.startswith("LISTENING "):
            self.stop()
            with open(self.stderr_path, "rb") as f:
                err = f.read().decode(errors="replace")
            raise RuntimeError(f"fake apiserver did not start (got {line!r}); stderr:\n{err}")
        return line.split(" ", 1)[1]

    def write_kubeconfig(self):
        return write_kubeconfig(self.kubeconfig, self.url, self.namespace, self.ca_file, self.token,
                                self.client_cert_file, self.client_key_file)

    def stop(self):
        self.delete_namespace()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._stderr.close()


def start(tmpdir, tls=True, token="test-token", client_cert=False, namespace=None, extra_args=()):
    """Start the fake API server (subprocess); returns a Fake (also a context manager)."""
    return Fake(tmpdir, tls=tls, token=token, client_cert=client_cert, namespace=namespace, extra_args=extra_args)


class RealCluster(_Env):
    """A real cluster from a kubeconfig (current context)."""
    is_fake = False

    def __init__(self, kubeconfig_path, tmpdir):
        self.dir = os.fspath(tmpdir)
        os.makedirs(self.dir, exist_ok=True)
        with open(kubeconfig_path) as f:
            cfg = yaml.safe_load(f)
        base = os.path.dirname(os.path.abspath(kubeconfig_path))
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg.get("clusters", []) if c["name"] == ctx["cluster"])
        user = next((u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user")), {}) or {}
        self.url = cluster["server"].rstrip("/")
        self.insecure = bool(cluster.get("insecure-skip-tls-verify"))

        def materialize(data_key, file_key, name):
            if user_or_cluster.get(data_key):
                p = os.path.join(self.dir, name)
                with open(p, "wb") as f:
                    f.write(base64.b64decode(user_or_cluster[data_key]))
                return p
            if user_or_cluster.get(file_key):
                return os.path.join(base, user_or_cluster[file_key])
            return None
        user_or_cluster = cluster
        self.ca_file = materialize("certificate-authority-data", "certificate-authority", "ca.crt")
        user_or_cluster = user
        self.client_cert_file = materialize("client-certificate-data", "client-certificate", "client.crt")
        self.client_key_file = materialize("client-key-data", "client-key", "client.key")
        self.token = user.get("token")
        if not self.token and user.get("tokenFile"):
            with open(os.path.join(base, user["tokenFile"])) as f:
                self.token = f.read().strip()
        self.source_kubeconfig = kubeconfig_path
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.namespace = ctx.get("namespace") or "default"

    def write_kubeconfig(self):
        """A copy of the source kubeconfig whose current context uses self.namespace."""
        with open(self.source_kubeconfig) as f:
            cfg = yaml.safe_load(f)
        base = os.path.dirname(os.path.abspath(self.source_kubeconfig))
        for c in cfg.get("clusters", []):
            if c["cluster"].get("certificate-authority"):
                c["cluster"]["certificate-authority"] = os.path.join(base, c["cluster"]["certificate-authority"])
        for u in cfg.get("users", []):
            for k in ("client-certificate", "client-key", "tokenFile"):
                if (u.get("user") or {}).get(k):
                    u["user"][k] = os.path.join(base, u["user"][k])
        for c in cfg.get("contexts", []):
            if c["name"] == cfg.get("current-context"):
                c["context"]["namespace"] = self.namespace
        with open(self.kubeconfig, "w") as f:
            yaml.safe_dump(cfg, f, default_flow_style=False)
        return self.kubeconfig

    def stop(self):
        self.delete_namespace()


def kube_env(tmp_path, **fake_kwargs):
    """A cluster for one test: a real one (MP_TEST_KUBECONFIG) or the fake, with a fresh namespace.

    The namespace is created here, written into env.kubeconfig's context, and deleted by
    env.stop().  fake_kwargs go to start() (tls, token, client_cert) and are ignored for a
    real cluster."""
    tmp = os.fspath(tmp_path)
    ns = random_namespace()
    real = os.environ.get("MP_TEST_KUBECONFIG")
    if real:
        env = RealCluster(real, os.path.join(tmp, "real-kube"))
    else:
        env = start(os.path.join(tmp, "fake-kube"), **fake_kwargs)
    try:
        env.create_namespace(ns)
        env.write_kubeconfig()
    except BaseException:
        env.stop()
        raise
    return env
