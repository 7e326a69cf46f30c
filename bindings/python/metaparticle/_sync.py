"""Sync: distributed Lock and leader Election over mp-sidecar.

The classes here are the Pythonic face of ``metaparticle._native``, which calls
libmetaparticle's C ABI. They translate arguments (seconds, None, callables),
keep objects alive while the C core may still call back into them, and close
everything at interpreter exit. All distributed-systems behaviour (renewal,
loss detection, fencing tokens, contending again) is the C core's.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from types import TracebackType
from typing import Callable, ContextManager, Iterator, Optional, Set, Type, Union

from . import _native
from .errors import (
    MP_EINVAL,
    MP_ESTATE,
    InvalidArgumentError,
    InvalidStateError,
    LockNotHeldError,
    MetaparticleError,
)

__all__ = ["Lock", "Election"]

Callback = Callable[[], object]

# Locks that are held or being acquired in the background are kept alive, like
# running threads are: dropping the last reference to a held lock must not
# silently end a critical section (nor cancel a pending lock()). release(),
# unlock(), close() and a reported loss drop them from here.
_keepalive: Set["Lock"] = set()
_keepalive_mu = threading.Lock()

# Every open Lock and Election, closed at interpreter exit so that held locks
# are released at once (waiters need not wait for the TTL) and the C core's
# threads stop before the interpreter they call into goes away.
_instances: "weakref.WeakSet[Union[Lock, Election]]" = weakref.WeakSet()


def _keep(lock: "Lock") -> None:
    with _keepalive_mu:
        _keepalive.add(lock)


def _drop(lock: "Lock") -> None:
    with _keepalive_mu:
        _keepalive.discard(lock)


@atexit.register
def _close_all() -> None:
    for obj in list(_instances):
        try:
            obj.close()
        except Exception:  # exiting anyway; one failure must not keep others open
            pass


def _sink(ref: "weakref.ReferenceType", method: str) -> Callable[[], Optional[Callback]]:
    """A callable for the native layer that returns the user's callback for an
    event, after the event's bookkeeping. It holds the owner only weakly, so the
    native object (which Python's garbage collector cannot see into) never sits
    on a reference cycle."""

    def sink() -> Optional[Callback]:
        owner = ref()
        return getattr(owner, method)() if owner is not None else None

    return sink


def _check_callable(value: object, what: str) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{what} must be callable or None, not {type(value).__name__}")


def _check_str(value: object, what: str, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str{' or None' if optional else ''}, not {type(value).__name__}")


def _ttl_seconds(ttl: Optional[float]) -> int:
    """TTL in whole seconds for the C core; 0 asks for its default (15 s)."""
    if ttl is None:
        return 0
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        raise TypeError(f"ttl must be a number of seconds or None, not {type(ttl).__name__}")
    if ttl != ttl or ttl < 1 or (isinstance(ttl, float) and not ttl.is_integer()):
        raise InvalidArgumentError(MP_EINVAL, f"ttl must be a whole number of seconds (at least 3), not {ttl!r}")
    # Out-of-range values go through (capped to fit the C type) so the core
    # reports its own limits.
    return min(int(ttl), 0xFFFFFFFF)


def _timeout_ms(timeout: Optional[float]) -> int:
    """Timeout in milliseconds for the C core; -1 waits forever."""
    if timeout is None:
        return -1
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    if timeout == -1:  # threading.Lock.acquire's spelling of "forever"
        return -1
    if timeout != timeout or timeout < 0:
        raise InvalidArgumentError(MP_EINVAL, f"timeout must be None or a non-negative number of seconds, not {timeout!r}")
    if timeout == float("inf"):
        return -1
    return min(int(-(-timeout * 1000 // 1)), 2**31 - 1)  # round up: never wait less than asked


class Lock:
    """A distributed lock, held through mp-sidecar.

    ``Lock(name)`` does not contact the sidecar; acquire it with ``with lock:``,
    :meth:`acquire`, :meth:`try_acquire`, :meth:`hold` or, in the callback style
    of the JavaScript API, :meth:`lock` (calls ``on_acquired`` once held).

    While held, the C core renews the lock in the background. If a renewal
    cannot be confirmed in time the lock is *lost*: ``on_lost()`` is called
    (from a library thread), or, **if no on_lost handler was given, the process
    prints why and exits with status 1** — continuing would let two holders run
    at once.

    Args:
        name: the lock's name; a Kubernetes object name (lowercase letters,
            digits, '-' and '.', at most 253 characters).
        on_acquired: called with no arguments when :meth:`lock` has acquired.
        on_lost: called with no arguments each time a held lock is lost.
        ttl: seconds (whole, 3..3600) after which a holder that stopped
            renewing loses the lock; default 15.
        owner: this holder's identity; default ``"<host name>/<pid>"``.
        sidecar: base URL of mp-sidecar; default ``$METAPARTICLE_SIDECAR``,
            else ``http://127.0.0.1:13131``.

    Callbacks run on a thread of the library (never the caller's), one at a
    time; exceptions they raise are printed through :func:`sys.unraisablehook`.
    """

    def __init__(
        self,
        name: str,
        on_acquired: Optional[Callback] = None,
        on_lost: Optional[Callback] = None,
        *,
        ttl: Optional[float] = None,
        owner: Optional[str] = None,
        sidecar: Optional[str] = None,
    ) -> None:
        _check_str(name, "lock name", optional=False)
        _check_callable(on_acquired, "on_acquired")
        _check_callable(on_lost, "on_lost")
        _check_str(owner, "owner")
        _check_str(sidecar, "sidecar")
        self._on_acquired = on_acquired
        self._on_lost = on_lost
        ref = weakref.ref(self)
        self._acquired_sink = _sink(ref, "_acquired_event")
        self._native = _native.Lock(
            name, sidecar, owner, _ttl_seconds(ttl), _sink(ref, "_lost_event") if on_lost is not None else None
        )
        _instances.add(self)

    # -- events from the C core (on its callback thread) ----------------------

    def _acquired_event(self) -> Optional[Callback]:
        return self._on_acquired

    def _lost_event(self) -> Optional[Callback]:
        _drop(self)
        return self._on_lost

    # -- blocking API ----------------------------------------------------------

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Acquire the lock, waiting for it as long as needed (or ``timeout``
        seconds). Returns True once held, False if the timeout passed (or, with
        ``blocking=False``, if someone else holds it; or the lock was closed
        meanwhile, e.g. at interpreter exit) — like :meth:`threading.Lock.acquire`.

        Waiting is a long-poll on the sidecar, so a released lock is taken
        within milliseconds. Ctrl-C interrupts the wait (KeyboardInterrupt);
        :meth:`cancel` from another thread makes it raise CanceledError.

        Raises:
            InvalidStateError: this handle already holds or is acquiring it.
            SidecarUnreachableError, BackendError, ProtocolError: the sidecar
                or its storage failed.
        """
        if not blocking:
            if timeout is not None and timeout != -1:
                raise InvalidArgumentError(MP_EINVAL, "a timeout cannot be given for a non-blocking acquire")
            return self.try_acquire()
        ms = _timeout_ms(timeout)
        if self._native.acquire(ms, False):
            _keep(self)
            return True
        return False

    def try_acquire(self) -> bool:
        """One attempt: True if acquired, False if someone else holds the lock."""
        if self._native.try_acquire():
            _keep(self)
            return True
        return False

    def hold(self, timeout: Optional[float] = None) -> ContextManager["Lock"]:
        """A context manager that acquires (waiting at most ``timeout``
        seconds) and releases::

            with lock.hold(timeout=5):
                ...

        Raises:
            LockTimeoutError: not acquired within ``timeout`` (a TimeoutError).
        """
        ms = _timeout_ms(timeout)
        return self._hold(ms)

    @contextlib.contextmanager
    def _hold(self, ms: int) -> Iterator["Lock"]:
        self._native.acquire(ms, True)  # raises LockTimeoutError with the core's message
        _keep(self)
        try:
            yield self
        finally:
            self._release_quietly()

    def release(self) -> None:
        """Give the lock up at once (a waiter takes it within milliseconds).
        Also cancels a pending :meth:`lock`.

        Raises:
            LockNotHeldError: neither held nor pending (e.g. already lost).
        """
        try:
            self._native.release()
        finally:
            _drop(self)

    def cancel(self) -> None:
        """Make a blocking :meth:`acquire` in another thread raise
        CanceledError, and cancel a pending :meth:`lock`. Does not release a
        lock that is already held."""
        self._native.cancel()
        if not self._native.held:
            _drop(self)

    # -- callback API (the JavaScript shape) ------------------------------------

    def lock(self) -> None:
        """Start acquiring in the background and return at once; ``on_acquired()``
        is called (on a library thread) once the lock is held. Sidecar errors
        while waiting are retried. Stop waiting, or give the lock up, with
        :meth:`unlock`."""
        _keep(self)
        try:
            self._native.lock_async(self._acquired_sink)
        except BaseException:
            _drop(self)
            raise

    def unlock(self) -> None:
        """Release the lock, or cancel a pending :meth:`lock` (same as :meth:`release`)."""
        self.release()

    # -- state -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def owner(self) -> str:
        """This holder's identity as the sidecar sees it."""
        return self._native.owner

    @property
    def held(self) -> bool:
        """True while this handle holds the lock (not lost, not released)."""
        return self._native.held

    @property
    def token(self) -> Optional[int]:
        """The fencing token of the current hold, or None when not held.

        Strictly increasing across all holders of this lock name and unchanged
        by renewals: pass it to storage that rejects writes carrying a smaller
        token than one it has seen."""
        return self._native.token

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        """Release the lock if held and free its resources. Further calls raise
        InvalidStateError. Waits for a blocking call in another thread to be
        canceled. Called for every open lock at interpreter exit."""
        try:
            self._native.close()
        finally:
            _drop(self)

    # -- context manager ---------------------------------------------------------

    def __enter__(self) -> "Lock":
        if not self.acquire():
            # Waiting forever ends without the lock only if it was closed.
            raise InvalidStateError(MP_ESTATE, f"lock {self.name!r} was closed while acquiring")
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._release_quietly()

    def _release_quietly(self) -> None:
        # A lock lost inside the block has already been reported through
        # on_lost (or ended the process), so leaving the block is not an error.
        try:
            self.release()
        except LockNotHeldError:
            pass

    def __repr__(self) -> str:
        try:
            state = "closed" if self.closed else ("held, token %d" % self.token if self.held else "not held")
        except MetaparticleError:
            state = "unknown"
        return f"<metaparticle.Lock {self.name!r} owner={self.owner!r} {state}>"


class Election:
    """Leader election among processes contending for ``name`` through mp-sidecar.

    :meth:`run` contends, calls ``on_leader()`` when this process becomes
    leader, ``on_lost()`` when leadership ends for any reason other than
    :meth:`stop` (e.g. the sidecar became unreachable), and then contends
    again — until :meth:`stop`. The callbacks run on the thread that called
    :meth:`run`; exceptions they raise are printed through
    :func:`sys.unraisablehook`, except KeyboardInterrupt and SystemExit, which
    stop the election and propagate out of :meth:`run`. Ctrl-C while
    :meth:`run` waits gives leadership up at once and raises KeyboardInterrupt.

    Args:
        name: the election's name (same rules as lock names).
        on_leader: called with no arguments on becoming leader.
        on_lost: called with no arguments on losing leadership (not on stop).
        ttl: seconds (3..3600) a crashed leader keeps leadership; default 15.
        identity: this candidate's identity; default ``"<host name>/<pid>"``.
        sidecar: base URL of mp-sidecar (see :class:`Lock`).

    As a context manager, leaving the block stops the election (and waits for
    a :meth:`start`-ed background run to end)::

        with Election("primary", on_leader, on_lost).start() as election:
            serve_forever()
    """

    def __init__(
        self,
        name: str,
        on_leader: Optional[Callback] = None,
        on_lost: Optional[Callback] = None,
        *,
        ttl: Optional[float] = None,
        identity: Optional[str] = None,
        sidecar: Optional[str] = None,
    ) -> None:
        _check_str(name, "election name", optional=False)
        _check_callable(on_leader, "on_leader")
        _check_callable(on_lost, "on_lost")
        _check_str(identity, "identity")
        _check_str(sidecar, "sidecar")
        self._on_leader = on_leader
        self._on_lost = on_lost
        self._thread: Optional[threading.Thread] = None
        ref = weakref.ref(self)
        self._native = _native.Election(
            name,
            sidecar,
            identity,
            _ttl_seconds(ttl),
            _sink(ref, "_leader_event") if on_leader is not None else None,
            _sink(ref, "_lost_event") if on_lost is not None else None,
        )
        _instances.add(self)

    def _leader_event(self) -> Optional[Callback]:
        return self._on_leader

    def _lost_event(self) -> Optional[Callback]:
        return self._on_lost

    def run(self) -> None:
        """Contend and lead until :meth:`stop`; blocks. Raises InvalidStateError
        if this election is already running."""
        self._native.run()

    def start(self) -> "Election":
        """Run in a background (daemon) thread; returns self. The callbacks run
        on that thread. Stop with :meth:`stop` or by leaving a ``with`` block."""
        if self._thread is not None and self._thread.is_alive():
            raise InvalidStateError(MP_ESTATE, f"election {self.name!r} is already running")
        self._thread = threading.Thread(target=self.run, name=f"metaparticle-election-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Make :meth:`run` return, giving leadership up at once if held
        (on_lost is not called). Thread-safe; callable from the callbacks. If
        started with :meth:`start`, use :meth:`join` to wait for the end."""
        self._native.stop()

    shutdown = stop  # the name in the original JavaScript and .NET APIs

    def join(self, timeout: Optional[float] = None) -> bool:
        """Stop the election and wait (up to ``timeout`` seconds) for a
        :meth:`start`-ed run to end. Returns True when it has ended."""
        thread = self._thread
        if thread is None:
            return True
        # Repeat the stop: one issued before the thread's run() began would be
        # forgotten when run() starts.
        waited = 0.0
        while thread.is_alive():
            if self.closed:
                thread.join(timeout if timeout is None else max(0.0, timeout - waited))
                break
            self._native.stop()
            thread.join(0.05)
            waited += 0.05
            if timeout is not None and waited >= timeout:
                break
        return not thread.is_alive()

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def identity(self) -> str:
        """This candidate's identity."""
        return self._native.identity

    @property
    def is_leader(self) -> bool:
        """True while this candidate leads."""
        return self._native.is_leader

    @property
    def leader(self) -> Optional[str]:
        """The current leader's identity as the sidecar sees it (asked now),
        or None when nobody leads."""
        return self._native.leader()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def close(self) -> None:
        """Stop, wait for :meth:`run` to return, and free the election. Called
        for every open election at interpreter exit."""
        self._native.close()

    def __enter__(self) -> "Election":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if not self.closed:
            self._native.stop()
            self.join()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("leader" if self.is_leader else "not leader")
        return f"<metaparticle.Election {self.name!r} identity={self.identity!r} {state}>"
