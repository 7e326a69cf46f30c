"""Child processes for the Python binding tests (driven by conftest.Child).

Each command reports progress as lines on stdout (flushed at once):

  hold URL NAME [TTL] [OWNER]   acquire, print "held <token>"; on the stdin
                                line "release": release, print "released".
                                Without an on_lost handler, so a loss ends
                                the process with status 1 (documented).
  wait URL NAME                 print "waiting", block in acquire(), print
                                "acquired <token>" once held.
  elect URL NAME IDENTITY [TTL] run an election in the main thread; print
                                "leader"/"lost" from the callbacks and
                                "stopped" when run() returns.
  exit-busy URL NAME            hold NAME (TTL 120), block a daemon thread in
                                acquire() of NAME-b, lead election NAME-e in
                                the background; print "ready" and return from
                                main: interpreter exit must clean all of it up.
  lock-unlock URL NAME N        N times: lock() (the lock is busy) and at once
                                unlock(); print "acquired" if on_acquired is
                                ever called, and "done" at the end.
"""

import sys

import metaparticle


def say(*words):
    print(*words, flush=True)


def hold(url, name, ttl=None, owner=None):
    lock = metaparticle.Lock(name, sidecar=url, ttl=int(ttl) if ttl else None, owner=owner or None)
    lock.acquire()
    say("held", lock.token)
    for line in sys.stdin:
        if line.strip() == "release":
            lock.release()
            say("released")


def wait(url, name):
    lock = metaparticle.Lock(name, sidecar=url)
    say("waiting")
    lock.acquire()
    say("acquired", lock.token)


def elect(url, name, identity, ttl=None):
    election = metaparticle.Election(
        name,
        on_leader=lambda: say("leader"),
        on_lost=lambda: say("lost"),
        sidecar=url,
        identity=identity,
        ttl=int(ttl) if ttl else None,
    )
    say("running")
    election.run()
    say("stopped")


def exit_busy(url, name):
    import threading

    held = metaparticle.Lock(name, on_lost=lambda: say("lost"), sidecar=url, ttl=120)
    held.acquire()
    blocked = metaparticle.Lock(name + "-b", sidecar=url)
    threading.Thread(target=blocked.acquire, daemon=True).start()
    leading = threading.Event()
    metaparticle.Election(name + "-e", leading.set, sidecar=url, ttl=120).start()
    leading.wait()
    say("ready")


def lock_unlock(url, name, times):
    for i in range(int(times)):
        lock = metaparticle.Lock(name, lambda: say("acquired"), sidecar=url, owner=f"pending-{i}")
        lock.lock()
        lock.unlock()
    say("done")


if __name__ == "__main__":
    {"hold": hold, "wait": wait, "elect": elect, "lock-unlock": lock_unlock, "exit-busy": exit_busy}[sys.argv[1]](*sys.argv[2:])
