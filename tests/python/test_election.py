"""metaparticle.Election against a real mp-sidecar."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import metaparticle
from conftest import WAIT, Sidecar, wait_for


class Recorder:
    """Callbacks that record events and the thread they ran on."""

    def __init__(self) -> None:
        self.events = []
        self.threads = set()
        self.cv = threading.Condition()

    def _record(self, what: str) -> None:
        with self.cv:
            self.events.append(what)
            self.threads.add(threading.current_thread().name)
            self.cv.notify_all()

    def on_leader(self) -> None:
        self._record("leader")

    def on_lost(self) -> None:
        self._record("lost")

    def wait_count(self, what: str, count: int = 1, timeout: float = WAIT) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: self.events.count(what) >= count, timeout)


def election(name, sidecar, identity, rec, ttl=None):
    return metaparticle.Election(
        name, rec.on_leader, rec.on_lost, sidecar=sidecar.url, identity=identity, ttl=ttl
    )


def test_single_candidate_leads_and_stops(sidecar, name):
    rec = Recorder()
    e = election(name, sidecar, "solo", rec)
    assert e.identity == "solo" and e.name == name
    with e.start():
        assert rec.wait_count("leader")
        assert e.is_leader
        assert e.leader == "solo"
        # Callbacks run on the thread that called run() (start()'s thread).
        assert rec.threads == {f"metaparticle-election-{name}"}
    assert not e.is_leader
    assert e.leader is None  # stop() gave leadership up at once
    assert "lost" not in rec.events  # on_lost is not called for a stop


def test_failover_on_stop(sidecar, name):
    ra, rb = Recorder(), Recorder()
    a = election(name, sidecar, "a", ra, ttl=120).start()
    assert ra.wait_count("leader")
    b = election(name, sidecar, "b", rb).start()
    assert not rb.wait_count("leader", timeout=0.5)
    assert a.is_leader and not b.is_leader
    assert b.leader == "a"
    a.stop()
    assert a.join(WAIT)
    # a's TTL is 120 s, so within WAIT only a's release on stop can let b in.
    assert rb.wait_count("leader")
    assert b.is_leader and not a.is_leader
    assert a.leader == "b"
    b.close()
    a.close()


def test_failover_when_leader_process_is_killed(sidecar, name, child):
    leader = child("elect", sidecar.url, name, "child", "3")
    leader.expect("leader")
    rec = Recorder()
    with election(name, sidecar, "parent", rec).start() as e:
        assert e.leader == "child"
        leader.kill()  # no release: the parent takes over after the TTL
        assert rec.wait_count("leader")
        assert e.is_leader and e.leader == "parent"


def test_leader_contends_again_after_a_loss(name):
    sidecar = Sidecar()
    try:
        rec = Recorder()
        with election(name, sidecar, "me", rec, ttl=3).start() as e:
            assert rec.wait_count("leader")
            port = sidecar.port
            sidecar.kill()
            assert rec.wait_count("lost")
            assert not e.is_leader
            # A sidecar on the same address again: the election contends anew.
            sidecar = Sidecar(port)
            assert rec.wait_count("leader", 2)
            assert e.is_leader
        assert rec.events == ["leader", "lost", "leader"]
    finally:
        sidecar.stop()


def test_stop_from_callback_and_run_in_main_thread(sidecar, name):
    rec = Recorder()
    holder = {}

    def on_leader():
        rec.on_leader()
        holder["e"].stop()

    e = metaparticle.Election(name, on_leader, sidecar=sidecar.url)
    holder["e"] = e
    e.run()  # returns once the callback stopped it
    assert rec.events == ["leader"]
    assert rec.threads == {threading.main_thread().name}
    assert not e.is_leader


def test_exception_in_on_leader_is_reported_and_run_continues(sidecar, name, monkeypatch):
    import sys

    reported = []
    monkeypatch.setattr(sys, "unraisablehook", lambda args: reported.append((args.exc_type, args.object)))

    def on_leader():
        raise RuntimeError("boom from on_leader")

    e = metaparticle.Election(name, on_leader, sidecar=sidecar.url).start()
    wait_for(lambda: reported, what="the exception report")
    assert reported[0] == (RuntimeError, on_leader)
    assert e.is_leader  # still running and leading
    assert e.join(WAIT)


def test_close_from_inside_callback(sidecar, name):
    closed = threading.Event()
    holder = {}

    def on_leader():
        holder["e"].close()
        closed.set()

    e = metaparticle.Election(name, on_leader, sidecar=sidecar.url)
    holder["e"] = e
    e.run()
    assert closed.is_set() and e.closed
    other = metaparticle.Lock(name, sidecar=sidecar.url, owner="other")
    assert other.try_acquire() is True  # leadership was given up
    other.release()


def test_run_twice_is_an_error(sidecar, name):
    e = metaparticle.Election(name, sidecar=sidecar.url).start()
    wait_for(lambda: e.is_leader, what="leadership")
    with pytest.raises(metaparticle.InvalidStateError, match="already running"):
        e.run()
    assert e.join(WAIT)


def test_bad_arguments():
    with pytest.raises(metaparticle.InvalidArgumentError) as info:
        metaparticle.Election("Not A Name")
    assert isinstance(info.value, ValueError) and "Not A Name" in str(info.value)
    with pytest.raises(TypeError, match="on_leader"):
        metaparticle.Election("ok", on_leader=3)


def test_ctrl_c_during_run_gives_leadership_up(sidecar, name, child):
    leader = child("elect", sidecar.url, name, "child", "120")
    leader.expect("leader")
    time.sleep(0.3)  # back inside the C wait after the callback
    leader.signal(signal.SIGINT)
    rc = leader.wait(WAIT)  # an un-interruptible run() would hang here
    assert rc != 0
    assert "KeyboardInterrupt" in leader.stderr, leader.stderr
    assert "stopped" not in leader.lines
    # Released on the way out: with a 120 s TTL only a release frees it.
    lock = metaparticle.Lock(name, sidecar=sidecar.url)
    assert lock.acquire(timeout=WAIT) is True
    lock.release()


def test_ctrl_c_while_waiting_to_lead(sidecar, name, child):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder", ttl=120)
    holder.acquire()
    candidate = child("elect", sidecar.url, name, "child")
    candidate.expect("running")
    time.sleep(0.5)
    candidate.signal(signal.SIGINT)
    assert candidate.wait(WAIT) != 0
    assert "KeyboardInterrupt" in candidate.stderr, candidate.stderr
    assert "leader" not in candidate.lines
    holder.release()
