#!/usr/bin/env python3
"""The seed Election example in Python: contend for leadership of "test" and
say when this process becomes or stops being the leader. Ctrl-C (or SIGTERM)
steps down at once, so another replica takes over within milliseconds.

    mp-sidecar &
    python3 examples/python/election.py & python3 examples/python/election.py
    python3 examples/python/election.py --ttl 5 my-election   # faster failover after a crash
"""

import argparse
import signal
import sys

import metaparticle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="test", help="the election's name")
    parser.add_argument("--ttl", type=int, default=None, metavar="SECONDS",
                        help="how long a crashed leader keeps leadership (default 15)")
    args = parser.parse_args()

    # SIGTERM (e.g. from Kubernetes) should step down like Ctrl-C does:
    # SystemExit stops the election and leaves run().
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    election = metaparticle.Election(
        args.name,
        on_leader=lambda: print(f"[{election.identity}] I am the leader", flush=True),
        on_lost=lambda: print(f"[{election.identity}] I lost the leader", flush=True),
        ttl=args.ttl,
    )
    print(f"[{election.identity}] Waiting for election '{args.name}'", flush=True)
    try:
        election.run()  # the callbacks run on this thread
    except KeyboardInterrupt:
        pass
    finally:
        print(f"[{election.identity}] Stopped", flush=True)


if __name__ == "__main__":
    try:
        main()
    except metaparticle.MetaparticleError as e:
        raise SystemExit(f"error: {e}")
