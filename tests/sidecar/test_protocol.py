"""mp-sidecar HTTP protocol v1 (README "Protocol (v1)") against the memory backend."""
import datetime
import http.client
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import IDENTITY, Sidecar, sidecar_binary

LOCK_FIELDS = {"name", "owner", "token", "ttlSeconds", "acquireTime", "renewTime", "expiry", "held"}


def parse_time(text):
    assert text.endswith("Z"), text
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")


def check_lock(r, status, name, owner, token=None, held=True):
    assert r.status == status, r
    assert r.header("content-type").startswith("application/json")
    lock = r.json()
    assert set(lock) == LOCK_FIELDS, lock
    assert lock["name"] == name
    assert lock["owner"] == owner
    assert lock["held"] is held
    if token is not None:
        # The memory backend's tokens are (epoch << 32) + n, n counting the
        # run's new holds across all names (so they grow across restarts).
        assert lock["token"] >> 32 >= 1, lock
        assert lock["token"] & 0xFFFFFFFF == token, lock
    for field in ("acquireTime", "renewTime", "expiry"):
        parse_time(lock[field])
    return lock


def check_error(r, status):
    assert r.status == status, r
    assert r.header("content-type").startswith("application/json")
    message = r.json()["message"]
    assert isinstance(message, str) and message
    return message


class Background(threading.Thread):
    """Runs a request in a thread; .result / .elapsed once joined."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn = fn
        self.result = None
        self.error = None
        self.elapsed = None

    def run(self):
        start = time.monotonic()
        try:
            self.result = self.fn()
        except BaseException as e:  # reported by get()
            self.error = e
        self.elapsed = time.monotonic() - start

    def get(self, timeout):
        self.join(timeout)
        assert not self.is_alive(), f"request still running after {timeout} s"
        if self.error:
            raise self.error
        return self.result


# ---------------------------------------------------------------- basic protocol

def test_acquire_renew_release(sidecar):
    first = check_lock(sidecar.acquire("db", owner="a", ttl=10), 200, "db", "a", token=1)
    assert first["ttlSeconds"] == 10
    assert parse_time(first["expiry"]) - parse_time(first["renewTime"]) == datetime.timedelta(seconds=10)

    renewed = check_lock(sidecar.acquire("db", owner="a", ttl=20), 200, "db", "a", token=1)
    assert renewed["ttlSeconds"] == 20
    assert renewed["acquireTime"] == first["acquireTime"]
    assert parse_time(renewed["renewTime"]) >= parse_time(first["renewTime"])

    check_lock(sidecar.request("GET", "/locks/db"), 200, "db", "a", token=1)

    released = check_lock(sidecar.release("db", owner="a"), 200, "db", "", token=1, held=False)
    # The record (and its token counter) stays after a release.
    got = check_lock(sidecar.request("GET", "/locks/db"), 200, "db", "", token=1, held=False)
    assert got["renewTime"] == released["renewTime"]


def test_get_missing_lock_is_404(sidecar):
    message = check_error(sidecar.request("GET", "/locks/nothing-here"), 404)
    assert "nothing-here" in message


def test_token_increments_per_holder_and_not_on_renew(sidecar):
    tokens = []
    for owner in ["a", "b", "b", "a", "a"]:
        lock = check_lock(sidecar.acquire("t", owner=owner, ttl=30), 200, "t", owner)
        tokens.append(lock["token"])
        if owner == "b" and tokens.count(lock["token"]) == 2:
            assert sidecar.release("t", owner="b").status == 200
        if owner == "a" and len(tokens) == 1:
            assert sidecar.release("t", owner="a").status == 200
    # a:1, (release) b:2, b renews:2, (release) a:3, a renews:3
    assert [t & 0xFFFFFFFF for t in tokens] == [1, 2, 2, 3, 3]
    # Re-acquiring after one's own release is a new acquisition: new token.
    assert sidecar.release("t", owner="a").status == 200
    check_lock(sidecar.acquire("t", owner="a"), 200, "t", "a", token=4)


def test_conflict_names_the_holder(sidecar):
    check_lock(sidecar.acquire("c", owner="alice", ttl=30), 200, "c", "alice", token=1)
    conflict = check_lock(sidecar.acquire("c", owner="bob", ttl=30), 409, "c", "alice", token=1)
    assert conflict["ttlSeconds"] == 30
    # The loser changed nothing.
    check_lock(sidecar.request("GET", "/locks/c"), 200, "c", "alice", token=1)


def test_json_put_without_fields_uses_identity_and_default_ttl(sidecar):
    lock = check_lock(sidecar.request("PUT", "/locks/d", body="{}"), 200, "d", IDENTITY, token=1)
    assert lock["ttlSeconds"] == 15  # --ttl default


def test_ttl_flag_sets_default_ttl(start_sidecar):
    sc = start_sidecar("--ttl", "42")
    lock = check_lock(sc.acquire("x", owner="o"), 200, "x", "o")
    assert lock["ttlSeconds"] == 42
    assert sc.terminate() == 0


# ---------------------------------------------------------------- expiry and waiting

def test_expiry_after_ttl(sidecar):
    check_lock(sidecar.acquire("e", owner="a", ttl=2), 200, "e", "a", token=1)
    check_lock(sidecar.acquire("e", owner="b", ttl=30), 409, "e", "a")
    time.sleep(2.3)
    # Unrenewed for a full TTL: shown as not held, and taken over with a new token.
    check_lock(sidecar.request("GET", "/locks/e"), 200, "e", "a", token=1, held=False)
    check_lock(sidecar.acquire("e", owner="b", ttl=30), 200, "e", "b", token=2)
    assert sidecar.metrics()["mp_sidecar_takeovers_total"] == 1
    # The old holder's renewal now fails: it lost the lock.
    check_lock(sidecar.acquire("e", owner="a", ttl=1), 409, "e", "b", token=2)


def test_renewal_keeps_the_lock_past_its_ttl(sidecar):
    # Renewing every 0.5 s keeps a 2 s lock for well past 2 s.
    check_lock(sidecar.acquire("r", owner="a", ttl=2), 200, "r", "a", token=1)
    for _ in range(6):
        time.sleep(0.5)
        check_lock(sidecar.acquire("r", owner="a", ttl=2), 200, "r", "a", token=1)
        check_lock(sidecar.acquire("r", owner="b", ttl=2), 409, "r", "a", token=1)


def test_long_poll_returns_when_holder_releases(sidecar):
    check_lock(sidecar.acquire("w", owner="a", ttl=60), 200, "w", "a", token=1)
    waiter = Background(lambda: sidecar.acquire("w", owner="b", ttl=60, wait=60, timeout=90))
    waiter.start()
    sidecar.wait_for_metric("mp_sidecar_waiters", 1)
    assert waiter.is_alive()
    released_at = time.monotonic()
    assert sidecar.release("w", owner="a").status == 200
    r = waiter.get(timeout=30)
    # Woken by the release, not by the 60 s wait running out.
    assert time.monotonic() - released_at < 30
    check_lock(r, 200, "w", "b", token=2)
    assert sidecar.metrics()["mp_sidecar_waiters"] == 0


def test_long_poll_times_out_with_409(sidecar):
    check_lock(sidecar.acquire("wt", owner="a", ttl=60), 200, "wt", "a")
    start = time.monotonic()
    r = sidecar.acquire("wt", owner="b", ttl=60, wait=1)
    assert time.monotonic() - start >= 0.9  # it did wait
    check_lock(r, 409, "wt", "a", token=1)


def test_long_poll_wakes_when_holder_expires(sidecar):
    held = check_lock(sidecar.acquire("we", owner="a", ttl=2), 200, "we", "a", token=1)
    start = time.monotonic()
    r = sidecar.acquire("we", owner="b", ttl=30, wait=60, timeout=90)
    # Woken when a's TTL ran out (not at the end of the 60 s wait), and not before.
    assert time.monotonic() - start < 30
    taken = check_lock(r, 200, "we", "b", token=2)
    gap = parse_time(taken["acquireTime"]) - parse_time(held["renewTime"])
    assert gap >= datetime.timedelta(seconds=1.99), gap


def test_long_poll_on_free_or_missing_lock_returns_at_once(sidecar):
    check_lock(sidecar.acquire("wf", owner="a", wait=60, timeout=20), 200, "wf", "a", token=1)
    assert sidecar.release("wf", owner="a").status == 200
    check_lock(sidecar.acquire("wf", owner="b", wait=60, timeout=20), 200, "wf", "b", token=2)


def test_many_waiters_each_get_the_lock_in_turn(sidecar):
    check_lock(sidecar.acquire("q", owner="first", ttl=60), 200, "q", "first")
    waiters = [Background(lambda i=i: sidecar.acquire("q", owner=f"w{i}", ttl=60, wait=120, timeout=150))
               for i in range(5)]
    for w in waiters:
        w.start()
    sidecar.wait_for_metric("mp_sidecar_waiters", 5)
    holder = "first"
    seen = set()
    for _ in range(5):
        assert sidecar.release("q", owner=holder).status == 200
        # Exactly one waiter wins each release.
        deadline = time.monotonic() + 30
        while True:
            lock = sidecar.request("GET", "/locks/q").json()
            if lock["owner"] not in ("", holder):
                break
            assert time.monotonic() < deadline, "no waiter took the released lock"
            time.sleep(0.02)
        holder = lock["owner"]
        assert holder not in seen
        seen.add(holder)
    assert seen == {f"w{i}" for i in range(5)}
    for w in waiters:
        assert w.get(timeout=30).status == 200


def test_abandoned_long_poll_does_not_take_the_lock(sidecar):
    check_lock(sidecar.acquire("ab", owner="a", ttl=60), 200, "ab", "a")
    conn = sidecar.connection(timeout=0.5)
    with pytest.raises(socket.timeout):
        sidecar.request("PUT", "/locks/ab?wait=60", body={"owner": "gone"}, conn=conn)
    conn.close()
    # The hang-up is noticed at once: the waiter leaves the queue.
    sidecar.wait_for_metric("mp_sidecar_waiters", 0, timeout=2)
    assert sidecar.release("ab", owner="a").status == 200
    check_lock(sidecar.request("GET", "/locks/ab"), 200, "ab", "", held=False)


# ---------------------------------------------------------------- original clients

def test_original_client_pattern(sidecar):
    # Empty-bodied PUT: owner = the sidecar's identity, TTL 30 s.
    lock = check_lock(sidecar.request("PUT", "/locks/orig"), 200, "orig", IDENTITY, token=1)
    assert lock["ttlSeconds"] == 30
    # Heartbeat: GET then PUT, keeps it (same token).
    for _ in range(3):
        check_lock(sidecar.request("GET", "/locks/orig"), 200, "orig", IDENTITY, token=1)
        check_lock(sidecar.request("PUT", "/locks/orig", body=b""), 200, "orig", IDENTITY, token=1)
    # Another identity is refused, with the current lock as body.
    check_lock(sidecar.acquire("orig", owner="other-pod", ttl=30), 409, "orig", IDENTITY, token=1)
    # DELETE without ?owner= releases as the sidecar identity.
    check_lock(sidecar.request("DELETE", "/locks/orig"), 200, "orig", "", held=False)
    check_lock(sidecar.acquire("orig", owner="other-pod", ttl=30), 200, "orig", "other-pod", token=2)


def test_original_client_pattern_across_identities(start_sidecar):
    a = start_sidecar("--identity", "pod-a")
    check_lock(a.request("PUT", "/locks/o2"), 200, "o2", "pod-a")
    check_lock(a.request("PUT", "/locks/o2", body=b'{"owner": "pod-b"}'), 409, "o2", "pod-a")
    assert a.terminate() == 0


# ---------------------------------------------------------------- POST, DELETE, list

def test_post_is_create_only(sidecar):
    lock = check_lock(sidecar.request("POST", "/locks/p", body={"owner": "a", "ttlSeconds": 5}), 200, "p", "a", token=1)
    assert lock["ttlSeconds"] == 5
    check_lock(sidecar.request("POST", "/locks/p", body={"owner": "b"}), 409, "p", "a", token=1)
    check_lock(sidecar.request("POST", "/locks/p", body={"owner": "a"}), 409, "p", "a", token=1)
    assert sidecar.release("p", owner="a").status == 200
    # Still exists (free): create-only keeps refusing.
    check_lock(sidecar.request("POST", "/locks/p"), 409, "p", "", held=False)
    # Empty-bodied POST creates as the sidecar identity.
    p2 = check_lock(sidecar.request("POST", "/locks/p2"), 200, "p2", IDENTITY)
    assert p2["token"] > lock["token"]  # one counter for all names of a run


def test_delete_answers(sidecar):
    check_error(sidecar.release("none", owner="a"), 404)
    check_lock(sidecar.acquire("del", owner="a", ttl=30), 200, "del", "a")
    check_lock(sidecar.release("del", owner="b"), 409, "del", "a")
    check_lock(sidecar.release("del"), 409, "del", "a")  # sidecar identity is not the holder either
    check_lock(sidecar.release("del", owner="a"), 200, "del", "", held=False)
    check_lock(sidecar.release("del", owner="a"), 200, "del", "", held=False)  # idempotent
    check_lock(sidecar.release("del", owner="b"), 200, "del", "", held=False)  # free: nothing to refuse
    check_error(sidecar.request("DELETE", "/locks/del?owner="), 400)


def test_unicode_owner(sidecar):
    owner = "pod-\u00e9\u4e2d\U0001f512"
    check_lock(sidecar.acquire("uni", owner=owner), 200, "uni", owner)
    check_lock(sidecar.acquire("uni", owner="other"), 409, "uni", owner)


def test_bad_owner_in_query(sidecar):
    check_lock(sidecar.acquire("bq", owner="a"), 200, "bq", "a")
    check_error(sidecar.request("DELETE", "/locks/bq?owner=%FF"), 400)
    check_error(sidecar.request("DELETE", "/locks/bq?owner=a%01"), 400)
    check_lock(sidecar.request("GET", "/locks/bq"), 200, "bq", "a")


def test_owner_with_slash_in_query(sidecar):
    owner = "pod-7/1234"
    check_lock(sidecar.acquire("slash", owner=owner), 200, "slash", owner)
    check_lock(sidecar.request("DELETE", "/locks/slash?owner=pod-7%2F1234"), 200, "slash", "", held=False)


def test_list_locks(sidecar):
    r = sidecar.request("GET", "/locks")
    assert r.status == 200 and r.json() == []
    check_lock(sidecar.acquire("zeta", owner="z"), 200, "zeta", "z")
    check_lock(sidecar.acquire("alpha", owner="a"), 200, "alpha", "a")
    check_lock(sidecar.acquire("mid.dle", owner="m"), 200, "mid.dle", "m")
    assert sidecar.release("mid.dle", owner="m").status == 200
    r = sidecar.request("GET", "/locks")
    assert r.status == 200
    locks = r.json()
    assert [l["name"] for l in locks] == ["alpha", "mid.dle", "zeta"]
    assert [l["owner"] for l in locks] == ["a", "", "z"]
    assert [l["held"] for l in locks] == [True, False, True]
    for l in locks:
        assert set(l) == LOCK_FIELDS


def test_head_is_get_without_body(sidecar):
    check_lock(sidecar.acquire("h", owner="a"), 200, "h", "a")
    r = sidecar.request("HEAD", "/locks/h")
    assert r.status == 200 and r.body == b""
    assert sidecar.request("HEAD", "/locks/missing").status == 404
    assert sidecar.request("HEAD", "/healthz").status == 200


# ---------------------------------------------------------------- malformed requests

BAD_NAMES = [
    "UPPER",
    "a" * 254,
    "..",
    "",
    "a..b",
    "-start",
    "end-",
    "under_score",
    "sp%20ace",
    "a%2Fb",
    "a/b",
    "%00",
]


@pytest.mark.parametrize("name", BAD_NAMES, ids=lambda n: repr(n[:20]))
@pytest.mark.parametrize("method", ["GET", "PUT", "POST", "DELETE"])
def test_bad_lock_names(sidecar, method, name):
    check_error(sidecar.request(method, "/locks/" + name), 400)


def test_longest_valid_name(sidecar):
    name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(name) == 253
    check_lock(sidecar.acquire(name, owner="a"), 200, name, "a")


BAD_BODIES = [
    b"{",
    b"not json",
    b"[1, 2]",
    b'"owner"',
    b"null",
    b"42",
    b'{"ttlSeconds": "10"}',
    b'{"ttlSeconds": 1.5}',
    b'{"ttlSeconds": 0}',
    b'{"ttlSeconds": -5}',
    b'{"ttlSeconds": 3601}',
    b'{"ttlSeconds": null}',
    b'{"ttlSeconds": true}',
    b'{"owner": 5}',
    b'{"owner": ""}',
    b'{"owner": null}',
    b'{"owner": "a\\u0001b"}',
    b'{"owner": "' + b"x" * 1025 + b'"}',
    b'{"owner": "bad \xff utf8"}',
    b'{"owner": "overlong \xc0\xaf"}',
    b"\xff\xfe",
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=lambda b: repr(b[:24]))
@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_bad_bodies(sidecar, method, body):
    check_error(sidecar.request(method, "/locks/bb", body=body), 400)
    # Nothing was created.
    assert sidecar.request("GET", "/locks/bb").status == 404


@pytest.mark.parametrize("wait", ["abc", "-1", "", "1e999", "nan", "5s"])
def test_bad_wait(sidecar, wait):
    check_error(sidecar.request("PUT", f"/locks/bw?wait={wait}", body={"owner": "a"}), 400)
    assert sidecar.request("GET", "/locks/bw").status == 404


def test_fractional_and_huge_wait_are_accepted(sidecar):
    check_lock(sidecar.request("PUT", "/locks/fw?wait=0.5", body={"owner": "a"}), 200, "fw", "a")
    start = time.monotonic()
    check_lock(sidecar.request("PUT", "/locks/fw?wait=0.3", body={"owner": "b"}), 409, "fw", "a")
    assert time.monotonic() - start >= 0.25
    # Longer than the 300 s cap is capped, not refused: here the lock is free.
    assert sidecar.release("fw", owner="a").status == 200
    check_lock(sidecar.request("PUT", "/locks/fw?wait=100000", body={"owner": "b"}), 200, "fw", "b")


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS", "TRACE", "FOO", "PROPFIND"])
@pytest.mark.parametrize("path,allow", [
    ("/locks/x", {"GET", "HEAD", "PUT", "POST", "DELETE"}),
    ("/locks", {"GET", "HEAD"}),
    ("/healthz", {"GET", "HEAD"}),
    ("/readyz", {"GET", "HEAD"}),
    ("/metrics", {"GET", "HEAD"}),
])
def test_other_methods_get_405_at_once(sidecar, method, path, allow):
    # The original hung forever here; a short client timeout proves it answers.
    r = sidecar.request(method, path, timeout=5)
    check_error(r, 405)
    assert {m.strip() for m in r.header("allow").split(",")} == allow


def test_write_methods_on_read_only_paths(sidecar):
    for path in ["/locks", "/healthz", "/metrics"]:
        for method in ["PUT", "POST", "DELETE"]:
            r = sidecar.request(method, path, body=b"{}")
            check_error(r, 405)
            assert "GET" in r.header("allow")


def test_405_with_a_body(sidecar):
    r = sidecar.request("PATCH", "/locks/x", body={"owner": "a"}, timeout=5)
    check_error(r, 405)


@pytest.mark.parametrize("path", ["/", "/lock", "/locksx", "/locks-x/y", "/metrics/x", "/healthz/", "/v1/locks/x"])
def test_unknown_paths_are_404(sidecar, path):
    message = check_error(sidecar.request("GET", path), 404)
    assert path in message


def test_oversized_body_is_413(sidecar):
    r = sidecar.request("PUT", "/locks/big", body=b"{" + b" " * (70 * 1024) + b"}", timeout=10)
    check_error(r, 413)
    assert sidecar.request("GET", "/locks/big").status == 404


def test_oversized_chunked_body_is_413(sidecar):
    conn = sidecar.connection(timeout=10)
    chunks = (b" " * 8192 for _ in range(10))  # 80 KiB, no Content-Length
    conn.request("PUT", "/locks/bigc", body=chunks, encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 413, body
    assert sidecar.request("GET", "/locks/bigc").status == 404


def test_body_at_the_limit_is_accepted(sidecar):
    payload = b'{"owner": "edge", "ttlSeconds": 9}'
    body = payload + b" " * (64 * 1024 - len(payload))
    assert len(body) == 64 * 1024
    lock = check_lock(sidecar.request("PUT", "/locks/edge", body=body), 200, "edge", "edge")
    assert lock["ttlSeconds"] == 9


MALFORMED_REQUESTS = [
    b"GARBAGE\r\n\r\n",
    b"GET /healthz\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"PUT /locks/a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"PUT /locks/a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"PUT /locks/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
]


@pytest.mark.parametrize("raw", MALFORMED_REQUESTS, ids=lambda b: repr(b[:30]))
def test_malformed_http_is_answered_or_closed_at_once(sidecar, raw):
    with socket.create_connection(("127.0.0.1", sidecar.port), timeout=5) as s:
        s.sendall(raw)
        try:
            answer = s.recv(4096)
        except socket.timeout:
            pytest.fail(f"mp-sidecar neither answered nor closed {raw!r}")
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4") or answer.startswith(b"HTTP/1.1 5"), answer
    assert sidecar.request("GET", "/locks/a").status == 404  # nothing was created
    assert sidecar.request("GET", "/healthz").status == 200


def test_stalled_connections_do_not_block_others(sidecar):
    # Incomplete requests park a connection (until the idle timeout), nothing more.
    stalled = []
    try:
        for raw in [b"\x00\x01", b"PUT /locks/s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"]:
            s = socket.create_connection(("127.0.0.1", sidecar.port), timeout=5)
            s.sendall(raw)
            stalled.append(s)
        check_lock(sidecar.acquire("s", owner="a"), 200, "s", "a")
        assert sidecar.request("GET", "/healthz", timeout=5).status == 200
    finally:
        for s in stalled:
            s.close()


def test_keep_alive_connection_serves_many_requests(sidecar):
    conn = sidecar.connection()
    try:
        for i in range(20):
            r = sidecar.request("PUT", "/locks/ka", body={"owner": "k"}, conn=conn)
            check_lock(r, 200, "ka", "k", token=1)
        check_error(sidecar.request("PATCH", "/locks/ka", conn=conn), 405)
        check_lock(sidecar.request("GET", "/locks/ka", conn=conn), 200, "ka", "k")
    finally:
        conn.close()


# ---------------------------------------------------------------- concurrency

def test_contention_exactly_one_holder_and_increasing_tokens(sidecar):
    threads = 50
    rounds = 2
    guard = threading.Lock()
    state = {"holder": None}
    tokens = []
    errors = []

    def worker(i):
        owner = f"worker-{i}"
        conn = sidecar.connection(timeout=200)
        try:
            for _ in range(rounds):
                r = sidecar.request("PUT", "/locks/hot?wait=150", body={"owner": owner, "ttlSeconds": 60}, conn=conn)
                if r.status != 200:
                    errors.append(f"{owner}: {r!r}")
                    return
                lock = r.json()
                with guard:
                    if state["holder"] is not None:
                        errors.append(f"{owner} got the lock while {state['holder']} held it")
                    state["holder"] = owner
                    tokens.append(lock["token"])
                time.sleep(0.002)
                with guard:
                    state["holder"] = None
                r = sidecar.request("DELETE", f"/locks/hot?owner={owner}", conn=conn)
                if r.status != 200 or r.json()["owner"] != "":
                    errors.append(f"{owner} release: {r!r}")
                    return
        except Exception as e:  # reported below
            errors.append(f"{owner}: {e!r}")
        finally:
            conn.close()

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(240)
    assert not any(w.is_alive() for w in workers), "some clients never got the lock"
    assert not errors, errors[:5]
    assert len(tokens) == threads * rounds
    # Distinct, strictly increasing, one step per new holder.
    assert [t & 0xFFFFFFFF for t in tokens] == list(range(1, threads * rounds + 1))


def test_clients_are_served_while_others_wait(sidecar):
    first = check_lock(sidecar.acquire("busy", owner="a", ttl=60), 200, "busy", "a")

    def take_and_pass_on(i):
        r = sidecar.acquire("busy", owner=f"b{i}", wait=60, timeout=90)
        if r.status == 200:
            sidecar.release("busy", owner=f"b{i}")
        return r

    waiters = [Background(lambda i=i: take_and_pass_on(i)) for i in range(10)]
    for w in waiters:
        w.start()
    sidecar.wait_for_metric("mp_sidecar_waiters", 10)
    # Ten connections are parked in long-polls; everything else still answers.
    for _ in range(5):
        assert sidecar.request("GET", "/healthz", timeout=5).status == 200
        check_lock(sidecar.acquire("other", owner="c"), 200, "other", "c")
    assert sidecar.release("busy", owner="a").status == 200
    # Each waiter takes the lock in turn and passes it on.
    for w in waiters:
        check_lock(w.get(timeout=60), 200, "busy", w.result.json()["owner"])
    last = check_lock(sidecar.request("GET", "/locks/busy"), 200, "busy", "", held=False)
    assert last["token"] > first["token"]


# ---------------------------------------------------------------- health and metrics

def test_healthz_and_readyz(sidecar):
    r = sidecar.request("GET", "/healthz")
    assert r.status == 200 and r.body.strip() == b"ok"
    r = sidecar.request("GET", "/readyz")
    assert r.status == 200 and r.body.strip() == b"ok"


def test_metrics(sidecar):
    r = sidecar.request("GET", "/metrics")
    assert r.status == 200
    assert r.header("content-type").startswith("text/plain")
    text = r.body.decode()
    for name, kind in [
        ("mp_sidecar_locks_held", "gauge"),
        ("mp_sidecar_waiters", "gauge"),
        ("mp_sidecar_requests_total", "counter"),
        ("mp_sidecar_acquisitions_total", "counter"),
        ("mp_sidecar_releases_total", "counter"),
        ("mp_sidecar_takeovers_total", "counter"),
        ("mp_sidecar_backend_errors_total", "counter"),
    ]:
        assert f"# HELP {name} " in text
        assert f"# TYPE {name} {kind}\n" in text
    before = sidecar.metrics()
    assert before["mp_sidecar_locks_held"] == 0

    check_lock(sidecar.acquire("m1", owner="a"), 200, "m1", "a")
    check_lock(sidecar.acquire("m2", owner="a"), 200, "m2", "a")
    check_lock(sidecar.acquire("m2", owner="b"), 409, "m2", "a")
    assert sidecar.release("m1", owner="a").status == 200
    sidecar.request("PATCH", "/locks/m1")

    after = sidecar.metrics()
    assert after["mp_sidecar_locks_held"] == 1
    assert after["mp_sidecar_acquisitions_total"] - before["mp_sidecar_acquisitions_total"] == 2
    assert after["mp_sidecar_releases_total"] - before["mp_sidecar_releases_total"] == 1
    assert after['mp_sidecar_requests_total{method="PUT",code="200"}'] == 2
    assert after['mp_sidecar_requests_total{method="PUT",code="409"}'] == 1
    assert after['mp_sidecar_requests_total{method="PATCH",code="405"}'] == 1
    assert after["mp_sidecar_backend_errors_total"] == 0


# ---------------------------------------------------------------- process behaviour

def test_sigterm_answers_long_polls_and_exits_0(start_sidecar):
    sc = start_sidecar()
    check_lock(sc.acquire("s", owner="holder", ttl=60), 200, "s", "holder")
    waiter = Background(lambda: sc.acquire("s", owner="waiter", wait=120, timeout=60))
    waiter.start()
    sc.wait_for_metric("mp_sidecar_waiters", 1)

    sc.proc.send_signal(signal.SIGTERM)
    r = waiter.get(timeout=30)
    assert r.status == 503, r
    assert "shutting down" in r.json()["message"]
    assert sc.proc.wait(timeout=30) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sc.port), timeout=5).close()
    log = sc.stderr_text()
    # Its holder has no session, so it cannot be told first: not released
    # (test_hardening.py covers sessions, which are).
    assert "1 lock(s) left to expire by their TTL" in log, log


def test_sigint_exits_0(start_sidecar):
    sc = start_sidecar()
    check_lock(sc.request("PUT", "/locks/i"), 200, "i", IDENTITY)
    sc.proc.send_signal(signal.SIGINT)
    assert sc.proc.wait(timeout=30) == 0
    assert "stopped: released 0 lock(s)" in sc.stderr_text()


def run_cli(*args, timeout=20):
    return subprocess.run([sidecar_binary(), *args], capture_output=True, text=True, timeout=timeout)


def test_help_mentions_every_flag():
    p = run_cli("--help")
    assert p.returncode == 0
    for flag in ["--listen", "--backend", "--namespace", "--kubeconfig", "--context", "--identity", "--ttl",
                 "--no-install-crd", "--log-level", "--help", "--version"]:
        assert flag in p.stdout, flag
    for word in ["memory", "kubernetes", "lease", "13131", "SIGTERM"]:
        assert word in p.stdout, word


@pytest.mark.parametrize("args", [
    ["--bogus"],
    ["--backend", "etcd"],
    ["--ttl", "0"],
    ["--ttl", "abc"],
    ["--listen", "127.0.0.1:99999"],
    ["--listen", "nohost.invalid:80"],
    ["--listen", "1:2:3"],
    ["--log-level", "loud"],
    ["--identity", ""],
    ["extra-positional"],
])
def test_bad_usage_exits_2(args):
    p = run_cli(*args)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "mp-sidecar:" in p.stderr and p.stderr.strip()


def test_port_in_use_exits_1():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        p = run_cli("--listen", f"127.0.0.1:{port}")
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert f"127.0.0.1:{port}" in p.stderr
    assert "in use" in p.stderr


def test_version():
    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.strip()
