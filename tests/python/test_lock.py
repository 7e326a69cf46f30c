"""metaparticle.Lock against a real mp-sidecar."""

from __future__ import annotations

import gc
import signal
import socket
import sys
import threading
import time
import weakref

import pytest

import metaparticle
from metaparticle import errors
from conftest import WAIT


def test_acquire_release(sidecar, name):
    lock = metaparticle.Lock(name, sidecar=sidecar.url)
    assert not lock.held
    assert lock.token is None
    assert lock.acquire() is True
    assert lock.held
    assert isinstance(lock.token, int) and lock.token > 0
    lock.release()
    assert not lock.held
    assert lock.token is None
    # The release reached the sidecar: another holder takes it at once.
    other = metaparticle.Lock(name, sidecar=sidecar.url, owner="other")
    assert other.try_acquire() is True
    other.release()


def test_context_manager_acquires_and_releases(sidecar, name):
    lock = metaparticle.Lock(name, sidecar=sidecar.url, owner="a")
    other = metaparticle.Lock(name, sidecar=sidecar.url, owner="b")
    with lock as entered:
        assert entered is lock
        assert lock.held
        assert other.try_acquire() is False
    assert not lock.held
    assert other.try_acquire() is True
    other.release()


def test_context_manager_releases_on_exception(sidecar, name):
    lock = metaparticle.Lock(name, sidecar=sidecar.url, owner="a")
    with pytest.raises(ZeroDivisionError):
        with lock:
            1 / 0
    assert not lock.held
    other = metaparticle.Lock(name, sidecar=sidecar.url, owner="b")
    assert other.try_acquire() is True
    other.release()


def test_token_strictly_increases_across_holders(sidecar, name):
    a = metaparticle.Lock(name, sidecar=sidecar.url, owner="a")
    b = metaparticle.Lock(name, sidecar=sidecar.url, owner="b")
    tokens = []
    for lock in (a, b, a, b):
        with lock:
            tokens.append(lock.token)
    assert tokens == sorted(tokens) and len(set(tokens)) == 4, tokens


def test_try_acquire_busy(sidecar, name):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    contender = metaparticle.Lock(name, sidecar=sidecar.url, owner="contender")
    assert contender.try_acquire() is False
    assert contender.acquire(blocking=False) is False
    assert not contender.held
    holder.release()
    assert contender.try_acquire() is True
    contender.release()


def test_acquire_timeout_returns_false_and_hold_raises(sidecar, name):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    contender = metaparticle.Lock(name, sidecar=sidecar.url, owner="contender")
    assert contender.acquire(timeout=0.3) is False
    assert not contender.held
    with pytest.raises(metaparticle.LockTimeoutError) as info:
        with contender.hold(timeout=0.3):
            pytest.fail("entered the block without the lock")
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.code == errors.MP_ETIMEOUT and err.code_name == "MP_ETIMEOUT"
    assert name in str(err)
    holder.release()
    with contender.hold(timeout=WAIT) as held:
        assert held.held


def test_hold_with_timeout_acquires_when_free(sidecar, name):
    lock = metaparticle.Lock(name, sidecar=sidecar.url)
    with lock.hold(timeout=WAIT):
        assert lock.held
    assert not lock.held


def test_waiter_wakes_when_released(sidecar, name):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder", ttl=120)
    holder.acquire()
    waiter = metaparticle.Lock(name, sidecar=sidecar.url, owner="waiter")
    got = []
    t = threading.Thread(target=lambda: got.append(waiter.acquire(timeout=WAIT)))
    t.start()
    holder.release()
    t.join(WAIT + 5)
    # With a 120 s TTL only the release can have let the waiter in.
    assert got == [True]
    waiter.release()


def test_contention_between_processes(sidecar, name, child):
    holder = child("hold", sidecar.url, name, "120")
    child_token = int(holder.expect("held").split()[1])
    lock = metaparticle.Lock(name, sidecar=sidecar.url)
    assert lock.try_acquire() is False
    assert lock.acquire(timeout=0.5) is False
    holder.send("release")
    holder.expect("released")
    assert lock.acquire(timeout=WAIT) is True
    assert lock.token > child_token
    # Now the child waits for us.
    waiter = child("wait", sidecar.url, name)
    waiter.expect("waiting")
    lock.release()
    assert int(waiter.expect("acquired").split()[1]) > child_token


def test_crashed_holder_loses_the_lock_after_ttl(sidecar, name, child):
    holder = child("hold", sidecar.url, name, "3")
    holder.expect("held")
    holder.kill()  # no release: the lock frees when its TTL runs out
    lock = metaparticle.Lock(name, sidecar=sidecar.url)
    assert lock.acquire(timeout=WAIT) is True
    lock.release()


def test_on_lost_called_when_sidecar_dies(sidecar, name):
    lost = threading.Event()
    lock = metaparticle.Lock(name, on_lost=lost.set, sidecar=sidecar.url, ttl=3)
    lock.acquire()
    assert lock.held
    sidecar.kill()
    assert lost.wait(WAIT), "on_lost was not called"
    assert not lock.held
    assert lock.token is None
    with pytest.raises(metaparticle.LockNotHeldError):
        lock.release()
    lock.close()


def test_loss_without_on_lost_exits_the_process(sidecar, name, child):
    holder = child("hold", sidecar.url, name, "3")
    holder.expect("held")
    sidecar.kill()
    assert holder.wait() == 1
    assert "lost lock" in holder.stderr and name in holder.stderr, holder.stderr


def test_exception_in_callback_is_reported_not_fatal(sidecar, name, monkeypatch):
    reported = []
    done = threading.Event()

    def hook(args):
        reported.append((args.exc_type, args.object))
        done.set()

    monkeypatch.setattr(sys, "unraisablehook", hook)

    def on_lost():
        raise ValueError("boom from on_lost")

    lock = metaparticle.Lock(name, on_lost=on_lost, sidecar=sidecar.url, ttl=3)
    lock.acquire()
    sidecar.kill()
    assert done.wait(WAIT), "the callback's exception was not reported"
    assert reported[0] == (ValueError, on_lost)
    lock.close()


def test_lock_async_calls_on_acquired(sidecar, name):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    acquired = threading.Event()
    seen = {}

    def on_acquired():
        # Runs on a library thread; calling back into the lock is allowed.
        seen["held"] = lock.held
        seen["token"] = lock.token
        seen["thread"] = threading.current_thread() is not threading.main_thread()
        acquired.set()

    lock = metaparticle.Lock(name, on_acquired, sidecar=sidecar.url, owner="async")
    lock.lock()
    assert not acquired.wait(0.3)
    assert not lock.held
    holder.release()
    assert acquired.wait(WAIT)
    assert seen["held"] and seen["token"] > 0 and seen["thread"]
    lock.unlock()
    assert not lock.held


def test_release_from_inside_callback(sidecar, name):
    released = threading.Event()

    def on_acquired():
        lock.release()
        released.set()

    lock = metaparticle.Lock(name, on_acquired, sidecar=sidecar.url)
    lock.lock()
    assert released.wait(WAIT)
    assert not lock.held
    other = metaparticle.Lock(name, sidecar=sidecar.url, owner="other")
    assert other.try_acquire() is True
    other.release()


def test_unlock_cancels_pending_lock(sidecar, name):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    acquired = threading.Event()
    lock = metaparticle.Lock(name, acquired.set, sidecar=sidecar.url, owner="pending")
    lock.lock()
    time.sleep(0.2)  # the background acquire is waiting on the sidecar
    lock.unlock()
    holder.release()
    assert not acquired.wait(1.0), "a canceled lock() still acquired"
    assert not lock.held
    assert holder.try_acquire() is True
    holder.release()


def test_unlock_right_after_lock(sidecar, name, child):
    """unlock() immediately after lock(), before the background acquire has
    begun. In a child process: if the library deadlocks, the test fails
    instead of hanging the suite."""
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    proc = child("lock-unlock", sidecar.url, name, "20")
    try:
        proc.expect("done")
    except AssertionError:
        raise AssertionError("lock() immediately followed by unlock() deadlocked in mp_lock_release()") from None
    assert "acquired" not in proc.lines
    assert holder.held
    holder.release()


def test_pending_and_held_locks_are_kept_alive(sidecar, name):
    """The JavaScript shape `Lock(name, cb).lock()` keeps no reference; the
    lock must still be acquired, and stay held until released."""
    acquired = threading.Event()
    box = []
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    metaparticle.Lock(name, lambda: acquired.set(), sidecar=sidecar.url, owner="fire-and-forget").lock()
    gc.collect()
    holder.release()
    assert acquired.wait(WAIT)
    gc.collect()
    # Still held by the unreferenced lock.
    assert holder.try_acquire() is False

    # A lock that is not held is freed normally.
    idle = metaparticle.Lock(name, sidecar=sidecar.url, owner="idle")
    ref = weakref.ref(idle)
    del idle
    gc.collect()
    assert ref() is None


def test_close_releases_and_further_use_raises(sidecar, name):
    lock = metaparticle.Lock(name, sidecar=sidecar.url, owner="a")
    lock.acquire()
    lock.close()
    assert lock.closed
    assert not lock.held
    with pytest.raises(metaparticle.InvalidStateError) as info:
        lock.acquire()
    assert "closed" in str(info.value)
    other = metaparticle.Lock(name, sidecar=sidecar.url, owner="b")
    assert other.try_acquire() is True
    other.release()


def _blocked_acquire(lock):
    """Start lock.acquire() in a thread; returns (thread, outcome list)."""
    outcome = []

    def wait():
        try:
            outcome.append(lock.acquire())
        except metaparticle.CanceledError:
            outcome.append("canceled")

    t = threading.Thread(target=wait)
    t.start()
    return t, outcome


def test_cancel_interrupts_a_blocked_acquire(sidecar, name):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    waiter = metaparticle.Lock(name, sidecar=sidecar.url, owner="waiter")
    t, outcome = _blocked_acquire(waiter)
    time.sleep(0.3)
    waiter.cancel()
    t.join(WAIT)
    assert outcome == ["canceled"]
    assert not waiter.held
    holder.release()


def test_close_ends_a_blocked_acquire_with_false(sidecar, name):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder")
    holder.acquire()
    waiter = metaparticle.Lock(name, sidecar=sidecar.url, owner="waiter")
    t, outcome = _blocked_acquire(waiter)
    time.sleep(0.3)
    waiter.close()  # waits for the blocked call to end
    assert not t.is_alive()
    assert outcome == [False]
    holder.release()
    assert holder.try_acquire() is True  # the closed waiter did not take it
    holder.release()


def test_double_acquire_and_bad_release(sidecar, name):
    lock = metaparticle.Lock(name, sidecar=sidecar.url)
    with pytest.raises(metaparticle.LockNotHeldError) as info:
        lock.release()
    assert isinstance(info.value, RuntimeError)
    assert info.value.code == errors.MP_ENOTHELD
    lock.acquire()
    with pytest.raises(metaparticle.InvalidStateError) as info:
        lock.acquire()
    assert "already held" in str(info.value)
    lock.release()


@pytest.mark.parametrize(
    "bad, fragment",
    [("Bad_Name", "lowercase"), ("", "empty"), ("a" * 254, "253"), ("-leading", "start")],
)
def test_bad_name_is_invalid_argument(bad, fragment):
    with pytest.raises(metaparticle.InvalidArgumentError) as info:
        metaparticle.Lock(bad)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.code == errors.MP_EINVAL
    assert fragment in str(err), str(err)


def test_bad_options():
    with pytest.raises(metaparticle.InvalidArgumentError, match="ttl"):
        metaparticle.Lock("ok", ttl=1)
    with pytest.raises(metaparticle.InvalidArgumentError, match="ttl"):
        metaparticle.Lock("ok", ttl=4000)
    with pytest.raises(metaparticle.InvalidArgumentError, match="ttl"):
        metaparticle.Lock("ok", ttl=2.5)
    with pytest.raises(metaparticle.InvalidArgumentError, match="NUL"):
        metaparticle.Lock("ok", owner="a\0b")
    with pytest.raises(TypeError, match="lock name"):
        metaparticle.Lock(42)
    with pytest.raises(TypeError, match="on_lost"):
        metaparticle.Lock("ok", on_lost="not callable")
    lock = metaparticle.Lock("ok")
    with pytest.raises(metaparticle.InvalidArgumentError, match="timeout"):
        lock.acquire(timeout=-5)
    with pytest.raises(metaparticle.InvalidArgumentError, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_sidecar_names_the_address(name):
    url = f"http://127.0.0.1:{_free_port()}"
    lock = metaparticle.Lock(name, sidecar=url)
    with pytest.raises(metaparticle.SidecarUnreachableError) as info:
        lock.acquire()
    err = info.value
    assert isinstance(err, ConnectionError)
    assert err.code == errors.MP_ESIDECAR
    assert url in str(err)
    with pytest.raises(metaparticle.SidecarUnreachableError):
        lock.try_acquire()
    assert not lock.held


def test_sidecar_from_environment(sidecar, name, monkeypatch):
    monkeypatch.setenv("METAPARTICLE_SIDECAR", sidecar.url)
    with metaparticle.Lock(name) as lock:
        assert lock.held


def test_ctrl_c_interrupts_blocking_acquire(sidecar, name, child):
    holder = metaparticle.Lock(name, sidecar=sidecar.url, owner="holder", ttl=120)
    holder.acquire()
    waiter = child("wait", sidecar.url, name)
    waiter.expect("waiting")
    # Give it time to be inside acquire(): a signal before that would also end
    # in KeyboardInterrupt, but then the test would not exercise the C wait.
    time.sleep(0.5)
    waiter.signal(signal.SIGINT)
    rc = waiter.wait(WAIT)  # an un-interruptible wait would hang here
    assert rc != 0
    assert "KeyboardInterrupt" in waiter.stderr, waiter.stderr
    assert not any(line.startswith("acquired") for line in waiter.lines)
    # The waiter did not take the lock on its way out.
    assert holder.held
    holder.release()


def test_interpreter_exit_releases_and_cleans_up(sidecar, name, child):
    blocker = metaparticle.Lock(name + "-b", sidecar=sidecar.url, owner="parent", ttl=120)
    blocker.acquire()
    proc = child("exit-busy", sidecar.url, name)
    proc.expect("ready")
    assert proc.wait() == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    # Released at exit (TTLs are 120 s, so nothing expired meanwhile).
    for lock_name in (name, name + "-e"):
        lock = metaparticle.Lock(lock_name, sidecar=sidecar.url, owner="parent")
        assert lock.try_acquire() is True, lock_name
        lock.release()
    # The blocked acquire was canceled, not left to take the lock later.
    blocker.release()
    time.sleep(0.3)
    assert blocker.try_acquire() is True
    blocker.release()
