#!/usr/bin/env python3
"""The seed Lock example in Python: take the lock "test", hold it for 45
seconds (or --hold SECONDS), release it.

    mp-sidecar &                     # the sidecar, memory backend
    pip install ./bindings/python    # once
    python3 examples/python/lock.py --hold 5

Run two at once to see the second wait for the first. Ctrl-C releases the lock
on the way out, so a waiting process takes it at once.
"""

import argparse
import time

import metaparticle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hold", type=float, default=45, metavar="SECONDS", help="how long to hold the lock")
    parser.add_argument("--name", default="test", metavar="LOCK", help="the lock's name")
    args = parser.parse_args()

    def on_lost() -> None:
        # Without an on_lost handler, losing the lock ends the process.
        print(f"I lost the lock '{args.name}'!", flush=True)

    lock = metaparticle.Lock(args.name, on_lost=on_lost)
    print(f"Attempting to lock '{args.name}' as {lock.owner}", flush=True)
    with lock:
        print(f"I have the lock! (fencing token {lock.token})")
        print(f"Holding the lock for {args.hold:g} seconds", flush=True)
        time.sleep(args.hold)
    print("Unlocked")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("Interrupted")
    except metaparticle.MetaparticleError as e:
        raise SystemExit(f"error: {e}")
