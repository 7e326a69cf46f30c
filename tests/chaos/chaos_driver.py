#!/usr/bin/env python3
"""Chaos checker: proves or refutes "never two holders, loss always reported,
fencing tokens only grow" for Metaparticle locks under process faults.

N chaos_worker processes (tests/chaos/chaos_worker.c) loop acquire / fenced
critical section / release on one lock through mp-sidecar(s), logging every
critical section (see the worker's header for the record format). This driver
starts the sidecars (and, for the Kubernetes backends, the fake API server with
a state file, shared by two sidecars), then injects faults at random:

  kill_holder      SIGKILL the process holding the lock (a new worker replaces it)
  stop_holder      SIGSTOP the holder for longer than the TTL, then SIGCONT
  kill_sidecar     SIGKILL the holder's sidecar, restart it on the same port
  term_sidecar     SIGTERM the holder's sidecar, restart it once it exited
  restart_api      SIGKILL and restart the fake API server (objects kept)      [kube]
  api_errors       the next requests on the lock's object get 409 (PUT), 500,
                   then no answer for a while (a timeout)                      [kube]
Most faults are aimed at a long critical section (one that needs renewals): the
driver sends SIGUSR1 to a worker, which makes its next one last TTL/2 to 2 TTL,
and strikes while it runs.

Afterwards it reads the logs and counts:
  fencing violations   a hold whose token is not greater than every earlier hold's
  overlaps             two processes in their critical sections at once, unless one
                       of them was SIGSTOPped between its acquire call and the overlap
  lost unreported      a hold superseded by another process's hold while it believed
                       it held, that got neither on_lost nor MP_ELOST from release
  on_lost twice        on_lost ran more than once for one hold
  on_lost inconsistent on_lost ran, yet mp_lock_is_held then said 1 and mp_lock_release
                       MP_OK, and nobody else held the lock
(an on_lost that runs after mp_lock_release returned MP_ENOTHELD/MP_ELOST, even
during the next hold, counts as that earlier hold's report; the number is printed)
and prints the failover times after a holder's SIGKILL and a sidecar's SIGKILL or
SIGTERM, against the TTL. Exit status 1 if any violation was counted (or a fault
kind never ran, or too few holds happened to mean anything).

Usage (ctest runs the short mode; bench/chaos.sh the long one):
  chaos_driver.py --worker BIN --sidecar BIN [--backends memory,lease,kubernetes]
                  [--duration 25 | --acquisitions 10000] [--ttl 3] [--workers 4]
                  [--seed N] [--keep DIR] [--json FILE]
Python 3 standard library, tests/common/mp_sidecar.py and tests/fakes/kubefake.py
(the Kubernetes backends need PyYAML, as the fake API server does).
"""
import argparse
import bisect
import collections
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
sys.path.insert(0, os.path.join(HERE, "..", "fakes"))
from mp_sidecar import Sidecar, die_with_parent  # noqa: E402

LOCK = "chaos"
MP_OK, MP_ELOST, MP_ENOTHELD = 0, -7, -8
CODE_NAMES = {0: "MP_OK", -1: "MP_ERROR", -3: "MP_ETIMEOUT", -4: "MP_EBUSY", -5: "MP_ESIDECAR",
              -6: "MP_EPROTOCOL", -7: "MP_ELOST", -8: "MP_ENOTHELD", -9: "MP_ESTATE", -10: "MP_EBACKEND",
              -12: "MP_ECANCELED", -17: "MP_ESHUTDOWN", -18: "MP_ELIMIT"}
COMMON_FAULTS = ["kill_holder", "stop_holder", "kill_sidecar", "term_sidecar"]
KUBE_FAULTS = ["restart_api", "api_errors"]
NS = 1_000_000_000


def now_ns():
    return time.monotonic_ns()  # CLOCK_MONOTONIC, as the workers' records


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sidecar_has_option(binary, option):
    """Whether this mp-sidecar knows `option` (the checker also runs against older ones)."""
    out = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30).stdout
    return option.encode() in out


def code_name(rc):
    return CODE_NAMES.get(rc, str(rc))


# ---------------------------------------------------------------------------
# What the workers logged
# ---------------------------------------------------------------------------

class Hold:
    """One acquisition by one worker process, from its log records."""
    __slots__ = ("pid", "seq", "token", "t_call", "t_acq", "cs_ms", "t_end", "lost_at_end", "held_at_end",
                 "t_lost", "t_lost_late", "rc_release", "t_release", "writes", "rejected")

    def __init__(self, pid, seq, t_call, t_acq, token, cs_ms):
        self.pid, self.seq, self.token, self.t_call, self.t_acq = pid, seq, token, t_call, t_acq
        self.cs_ms = cs_ms
        self.t_end = self.lost_at_end = self.held_at_end = self.rc_release = self.t_release = None
        self.t_lost = []        # on_lost during the critical section or the release
        self.t_lost_late = []   # on_lost after mp_lock_release had returned
        self.writes = self.rejected = 0

    @property
    def key(self):
        return (self.pid, self.seq)

    def loss_reported(self):
        return bool(self.t_lost or self.t_lost_late) or self.rc_release == MP_ELOST or bool(self.lost_at_end)


class WorkerLog:
    """Reads a worker's log as it grows; a torn last line (SIGKILL) is kept for the next read."""

    def __init__(self, path, pid):
        self.path, self.pid = path, pid
        self.offset = 0
        self.partial = b""
        self.calls = {}          # seq -> t of the acquire call
        self.holds = {}          # seq -> Hold
        self.open_hold = None    # Hold between A and E
        self.early_lost = {}     # seq -> on_lost times logged before the hold's A record
        self.stray_lost = []     # on_lost times with no hold before them
        self.acquire_errors = collections.Counter()
        self.exited_cleanly = False
        self.started = False     # its S record: signals are handled from here on

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        new_holds = []
        for line in lines:
            f = line.decode(errors="replace").split()
            if not f:
                continue
            kind = f[0]
            if kind == "C":
                self.calls[int(f[1])] = int(f[2])
            elif kind == "X":
                self.acquire_errors[int(f[3])] += 1
            elif kind == "A":
                seq = int(f[1])
                h = Hold(self.pid, seq, self.calls.get(seq, int(f[2])), int(f[2]), int(f[3]), int(f[4]))
                h.t_lost.extend(self.early_lost.pop(seq, []))
                self.holds[seq] = self.open_hold = h
                new_holds.append(h)
            elif kind == "W":
                h = self.holds.get(int(f[1]))
                if h:
                    h.writes += 1
                    h.rejected += f[4] == "0"
            elif kind == "L":
                seq, t = int(f[1]), int(f[2])
                if len(f) < 5:   # a worker without phases: match the token
                    h = self.holds.get(seq)
                    if h and h.token == int(f[3]):
                        h.t_lost.append(t)
                elif f[4] != "0":
                    if seq in self.holds:
                        self.holds[seq].t_lost.append(t)
                    else:        # between the acquisition and its A record
                        self.early_lost.setdefault(seq, []).append(t)
                else:            # not holding: late, for the last hold released
                    done = [s for s in self.holds if s <= seq and self.holds[s].t_end is not None]
                    if done:
                        self.holds[max(done)].t_lost_late.append(t)
                    else:
                        self.stray_lost.append(t)
            elif kind == "E":
                h = self.holds.get(int(f[1]))
                if h:
                    h.t_end, h.lost_at_end, h.held_at_end = int(f[2]), f[4] == "1", f[5] == "1"
                if self.open_hold is h:
                    self.open_hold = None
            elif kind == "R":
                h = self.holds.get(int(f[1]))
                if h:
                    h.t_release, h.rc_release = int(f[2]), int(f[4])
            elif kind == "S":
                self.started = True
            elif kind == "Q":
                self.exited_cleanly = True
        return new_holds


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class SidecarSlot:
    """One mp-sidecar on a fixed port, so clients reconnect to its restarts."""

    def __init__(self, index, args, run_dir):
        self.index, self.args = index, list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_log = os.path.join(run_dir, f"sidecar-{index}.stderr")
        self.sc = None
        self.down_since = None
        self.restart_at = None   # when a killed one comes back
        self.terminating = False
        self.start()

    def start(self):
        # A port freed by a SIGKILL can take a moment to be bindable again.
        for attempt in range(50):
            sc = Sidecar(self.args, port=self.port, preexec_fn=die_with_parent)
            try:
                self.sc = sc.wait_started()
                break
            except AssertionError:
                self._keep_stderr(sc)
                if attempt == 49:
                    raise
                time.sleep(0.1)
        self.down_since = self.restart_at = None
        self.terminating = False

    def _keep_stderr(self, sc):
        with open(self.stderr_log, "a") as f:
            f.write(sc.stderr_text())
            f.write(f"--- exit {sc.proc.poll()}\n")

    def signal(self, sig):
        self.sc.proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.sc.proc.wait()
            self._keep_stderr(self.sc)

    def running(self):
        return self.sc is not None and self.sc.proc.poll() is None

    def stop(self):
        if self.sc is not None:
            err = self.sc.stop()
            self._keep_stderr(self.sc)
            return err


class Worker:
    def __init__(self, binary, slot, run_dir, ttl, cs_ms, gap_ms):
        self.slot = slot
        out = open(os.path.join(run_dir, "workers.out"), "ab")
        self.proc = subprocess.Popen([binary, "--url", slot.url, "--lock", LOCK, "--dir", run_dir,
                                      "--ttl", str(ttl), "--cs-ms", cs_ms, "--gap-ms", gap_ms,
                                      "--long-cs-ms", f"{ttl * 500}:{ttl * 2000}"],
                                     stdout=out, stderr=out, preexec_fn=die_with_parent)
        out.close()
        self.pid = self.proc.pid
        self.log = WorkerLog(os.path.join(run_dir, f"w-{self.pid}.log"), self.pid)
        self.killed_at = None
        self.stopped_at = None   # while SIGSTOPped
        self.cont_at = None      # when the SIGCONT is due

    def alive(self):
        return self.proc.poll() is None


# ---------------------------------------------------------------------------
# One backend's run
# ---------------------------------------------------------------------------

class Run:
    def __init__(self, backend, args, rng, run_dir):
        self.backend, self.args, self.rng, self.dir = backend, args, rng, run_dir
        self.ttl = args.ttl
        self.kube = backend != "memory"
        self.fake = None
        self.events = []          # (t, kind, details dict)
        self.stops = collections.defaultdict(list)   # pid -> [[t_stop, t_cont or None]]
        self.kills = {}           # pid -> t
        self.workers = []
        self.slots = []
        self.holds = []
        self.fault_counts = collections.Counter()
        self.pending = None       # a fault whose failover we wait for before the next one
        self.armed = None         # (kind, t, offset s): waiting for a long critical section to strike
        self.crashes = []         # workers that exited by themselves: "pid: status"
        self.t0 = None

    # -- setup / teardown ----------------------------------------------------------
    def setup(self):
        ttl = str(self.ttl)
        common = ["--ttl", ttl, "--log-level", "warn"]
        if self.kube:
            import kubefake  # needs PyYAML: only the Kubernetes backends do
            fake_dir = os.path.join(self.dir, "fake-kube")
            self.fake = kubefake.start(fake_dir, extra_args=["--state-file", os.path.join(fake_dir, "state.json")])
            self.fake.create_namespace(kubefake.random_namespace("mp-chaos"))
            self.fake.write_kubeconfig()
            resource = "leases" if self.backend == "lease" else "locks"
            self.object_path = f"/{resource}/{LOCK}"
            self.slots = [SidecarSlot(i, ["--backend", self.backend, "--kubeconfig", self.fake.kubeconfig,
                                          "--namespace", self.fake.namespace, "--identity", f"sidecar-{i}",
                                          *common], self.dir) for i in range(2)]
        else:
            if sidecar_has_option(self.args.sidecar, "--state-dir"):
                # The token epoch and crash marker of this test's sidecar, not the machine's.
                common += ["--state-dir", os.path.join(self.dir, "sidecar-state")]
            self.slots = [SidecarSlot(0, ["--backend", "memory", *common], self.dir)]
        for i in range(self.args.workers):
            self.spawn_worker(self.slots[i % len(self.slots)])

    def spawn_worker(self, slot):
        w = Worker(self.args.worker, slot, self.dir, self.ttl, self.args.cs_ms, self.args.gap_ms)
        self.workers.append(w)
        return w

    def teardown(self):
        for w in self.workers:
            if w.stopped_at is not None and w.alive():
                self.cont(w)
        for w in self.workers:
            if w.alive():
                w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 3 * self.ttl + 5
        for w in self.workers:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kills[w.pid] = now_ns()
                w.proc.kill()
                w.proc.wait()
                self.event("worker_stuck", pid=w.pid)
        self.read_logs()
        self.t_end = now_ns()
        problems = []
        for slot in self.slots:
            if slot.running():
                err = slot.stop()
                if err:
                    problems.append(f"sidecar {slot.index}: {err}")
        if self.fake is not None:
            self.fake.stop()
        return problems

    # -- bookkeeping -----------------------------------------------------------------
    def event(self, kind, **details):
        t = now_ns()
        self.events.append((t, kind, details))
        with open(os.path.join(self.dir, "events.jsonl"), "a") as f:
            f.write(json.dumps({"t": t, "kind": kind, **details}) + "\n")
        return t

    def read_logs(self):
        for w in self.workers:
            self.holds.extend(w.log.read())

    def acquisitions(self):
        return len(self.holds)

    def holder(self, long_for=None):
        """(worker, hold): a live, running worker in its critical section (the newest hold), or
        None. long_for=SECONDS: only a long critical section that has run that long."""
        best = None
        t = now_ns()
        for w in self.workers:
            h = w.log.open_hold
            if h and w.alive() and w.killed_at is None and w.stopped_at is None:
                if any(stop >= h.t_call for stop, _ in self.stops.get(w.pid, [])):
                    continue  # paused during this hold: it may believe it holds a lock it lost
                if long_for is not None and (h.cs_ms < self.ttl * 500 or t - h.t_acq < long_for * NS):
                    continue
                if best is None or h.t_acq > best[1].t_acq:
                    best = (w, h)
        return best

    def arm(self, kind):
        """Make some worker's next critical section long; strike `kind` while it runs."""
        # Only workers that logged S: before it, SIGUSR1 would still kill them.
        ready = [w for w in self.workers if w.alive() and w.killed_at is None and w.stopped_at is None
                 and w.log.started]
        for w in self.rng.sample(ready, min(1, len(ready))):
            w.proc.send_signal(signal.SIGUSR1)
        self.armed = (kind, now_ns(), self.rng.uniform(0.1, 0.6 * self.ttl))

    def cont(self, w):
        w.proc.send_signal(signal.SIGCONT)
        t = self.event("sigcont", pid=w.pid)
        self.stops[w.pid][-1][1] = t
        w.stopped_at = w.cont_at = None

    # -- faults ------------------------------------------------------------------------
    def fault_kinds(self):
        return COMMON_FAULTS + (KUBE_FAULTS if self.kube else [])

    def inject(self, kind, target=None):
        """Run one fault (on target's hold, else the newest); False if it cannot run now."""
        hw = target or self.holder()
        if kind in ("kill_holder", "stop_holder", "kill_sidecar", "term_sidecar") and hw is None:
            return False
        if kind == "kill_holder":
            w, h = hw
            w.proc.kill()
            t = self.event(kind, pid=w.pid, token=h.token)
            w.killed_at = self.kills[w.pid] = t
            w.proc.wait()
            self.spawn_worker(w.slot)
            self.pending = (t, kind, h.key)
        elif kind == "stop_holder":
            w, h = hw
            w.proc.send_signal(signal.SIGSTOP)
            t = self.event(kind, pid=w.pid, token=h.token)
            w.stopped_at = t
            w.cont_at = t + int((self.ttl + self.rng.uniform(0.5, 1.5)) * NS)
            self.stops[w.pid].append([t, None])
        elif kind in ("kill_sidecar", "term_sidecar"):
            w, h = hw
            slot = w.slot
            if not slot.running():
                return False
            if kind == "kill_sidecar":
                slot.signal(signal.SIGKILL)
                t = self.event(kind, slot=slot.index, holder=w.pid, token=h.token)
                # Memory: back at once (clients must notice the new instance); Kubernetes: the
                # other sidecar serves meanwhile.
                slot.restart_at = t + (0 if not self.kube else int(self.rng.uniform(0.2, 1.0) * NS))
            else:
                slot.signal(signal.SIGTERM)
                t = self.event(kind, slot=slot.index, holder=w.pid, token=h.token)
                slot.terminating = True
            slot.down_since = t
            self.pending = (t, kind, h.key)
        elif kind == "restart_api":
            t = self.event(kind)
            self.fake.restart(sigkill=True)
            self.event("api_back")
            self.pending = (t, kind, None)
        elif kind == "api_errors":
            # Rules fire in order: PUTs get 409 first, then any request 500, then no answer.
            conflicts, errors = self.rng.randint(1, 3), self.rng.randint(1, 4)
            delay = round(self.rng.uniform(0.5, 2.0), 2)
            self.fake.fail(count=conflicts, code=409, path_contains=self.object_path, method="PUT")
            self.fake.fail(count=errors, code=500, path_contains=self.object_path)
            self.fake.fail(count=1, code=0, drop=True, delay=delay, path_contains=self.object_path)
            t = self.event(kind, conflicts=conflicts, errors=errors, drop_after=delay)
            self.pending = (t, kind, None)
        self.fault_counts[kind] += 1
        return True

    def housekeeping(self):
        t = now_ns()
        for w in list(self.workers):
            if w.cont_at is not None and t >= w.cont_at and w.alive():
                self.cont(w)
            elif w.killed_at is None and not w.alive() and w.stopped_at is None:
                # A worker that exited on its own: note it, replace it.
                self.kills.setdefault(w.pid, t)
                w.killed_at = t
                self.event("worker_exited", pid=w.pid, code=w.proc.returncode)
                self.crashes.append(f"{w.pid}: exit status {w.proc.returncode}")
                self.spawn_worker(w.slot)
        for slot in self.slots:
            if slot.terminating and not slot.running():
                code = slot.sc.proc.returncode
                slot._keep_stderr(slot.sc)
                self.event("sidecar_exited", slot=slot.index, code=code)
                slot.terminating = False
                slot.restart_at = now_ns() + (0 if not self.kube else int(self.rng.uniform(0.2, 1.0) * NS))
            elif slot.terminating and t - slot.down_since > 30 * NS:
                slot.signal(signal.SIGKILL)
                self.event("sidecar_term_timeout", slot=slot.index)
                slot.terminating = False
                slot.restart_at = now_ns()
            if slot.restart_at is not None and t >= slot.restart_at:
                slot.start()
                self.event("sidecar_started", slot=slot.index)
        if self.pending:
            t_fault, kind, victim = self.pending
            if any(h.t_acq > t_fault and h.key != victim for h in self.holds[-20:]) or \
                    t - t_fault > 4 * self.ttl * NS:
                self.pending = None

    def run(self):
        args = self.args
        self.t0 = now_ns()
        end = self.t0 + int(args.duration * NS) if args.acquisitions is None else None
        hard_end = self.t0 + int(args.max_duration * NS)
        plan = self.fault_kinds()
        self.rng.shuffle(plan)   # every kind once first, then at random
        next_fault = self.t0 + NS
        last_report = self.t0
        while True:
            t = now_ns()
            # Every fault kind at least once: a short run goes on for up to 20 s more for that.
            if end is not None and t >= end and ((not plan and self.armed is None) or t >= end + 20 * NS):
                break
            if args.acquisitions is not None and (self.acquisitions() >= args.acquisitions or t >= hard_end):
                break
            self.read_logs()
            self.housekeeping()
            if self.pending is None and self.armed is None and t >= next_fault:
                kind = plan.pop(0) if plan else self.rng.choice(self.fault_kinds())
                if kind == "kill_holder" and self.rng.random() < 0.5:
                    self.inject(kind) or plan.insert(0, kind)
                else:
                    self.arm(kind)
                next_fault = now_ns() + int(self.rng.uniform(args.fault_gap[0], args.fault_gap[1]) * NS)
            if self.armed is not None:
                kind, t_armed, offset = self.armed
                target = self.holder(long_for=offset)
                if target is not None or t - t_armed > 4 * self.ttl * NS:
                    self.armed = None
                    if not self.inject(kind, target):
                        plan.insert(0, kind)
            if args.acquisitions is not None and t - last_report > 30 * NS:
                last_report = t
                print(f"  [{self.backend}] {self.acquisitions()} acquisitions, "
                      f"{sum(self.fault_counts.values())} faults", flush=True)
            time.sleep(0.02)
        self.t_stop_faults = now_ns()


# ---------------------------------------------------------------------------
# Analysis
# ---------------------------------------------------------------------------

def analyze(run):
    ttl_ns = run.ttl * NS
    holds = sorted(run.holds, key=lambda h: h.t_acq)
    kills = run.kills

    def stopped_between(pid, t0, t1):
        for s, c in run.stops.get(pid, []):
            c = c if c is not None else kills.get(pid, run.t_end)
            if s < t1 and c > t0:
                return True
        return False

    def belief_end(h):
        ends = [t for t in (h.t_end, h.t_lost[0] if h.t_lost else None, kills.get(h.pid)) if t is not None]
        return min(ends) if ends else run.t_end

    # An on_lost queued for a hold whose release returned MP_ENOTHELD/MP_ELOST may run during
    # the process's next hold (the callback does not say which hold it is about): when that
    # next hold then ended held and released MP_OK, the on_lost was the earlier hold's.
    spilled = 0
    by_pid = collections.defaultdict(list)
    for h in holds:
        by_pid[h.pid].append(h)
    for hs in by_pid.values():
        for prev, h in zip(hs, hs[1:]):
            if h.t_lost and h.held_at_end and h.rc_release == MP_OK and not prev.t_lost \
                    and not prev.t_lost_late and prev.rc_release in (MP_ELOST, MP_ENOTHELD):
                prev.t_lost_late, h.t_lost = h.t_lost, []
                h.lost_at_end = False
                spilled += 1

    rel = lambda t: round((t - run.t0) / NS, 3)  # noqa: E731
    examples = collections.defaultdict(list)
    fault_times = [(t, k) for t, k, _ in run.events if k in COMMON_FAULTS + KUBE_FAULTS]

    def example(kind, text, t):
        if len(examples[kind]) < 5:
            before = [f for f in fault_times if f[0] <= t]
            if before:
                text += f" [last fault: {before[-1][1]} at t={rel(before[-1][0])}s]"
            examples[kind].append(text)

    # 1. Fencing: each hold's token above every earlier hold's (a hold continuing in the same
    #    process with the same token, e.g. a re-acquire after a failed release, is no new hold).
    fencing = 0
    best = None   # the earlier hold with the highest token
    for i, h in enumerate(holds):
        if best is not None and h.token <= best.token and not (best.pid == h.pid and best.token == h.token):
            offenders = [g for g in holds[:i] if g.token >= h.token and not (g.pid == h.pid and g.token == h.token)
                         and not stopped_between(g.pid, g.t_call, g.t_acq)
                         and not stopped_between(h.pid, h.t_call, h.t_acq)]
            if offenders:
                fencing += 1
                g = max(offenders, key=lambda g: g.token)
                example("fencing", f"t={rel(h.t_acq)}s pid {h.pid} got token {h.token} after pid {g.pid} "
                                   f"got token {g.token} at t={rel(g.t_acq)}s", h.t_acq)
        if best is None or h.token > best.token:
            best = h

    # 2. Overlapping critical sections of two processes, not explained by a SIGSTOP of one of them.
    overlaps = excused_overlaps = 0
    overlap_ms = []
    active = []
    for h in holds:
        active = [g for g in active if belief_end(g) > h.t_acq]
        for g in active:
            if g.pid == h.pid:
                continue
            if stopped_between(g.pid, g.t_call, h.t_acq) or stopped_between(h.pid, h.t_call, h.t_acq):
                excused_overlaps += 1
                continue
            overlaps += 1
            ms = (min(belief_end(g), belief_end(h)) - h.t_acq) / 1e6
            overlap_ms.append(ms)
            example("overlap", f"t={rel(h.t_acq)}s pid {h.pid} (token {h.token}) acquired while pid {g.pid} "
                               f"(token {g.token}, since t={rel(g.t_acq)}s) was in its critical section "
                               f"for {ms:.1f} ms more", h.t_acq)
        active.append(h)

    # 3. Holds superseded while believed held, with no on_lost and no MP_ELOST.
    starts = [h.t_acq for h in holds]
    lost_unreported = superseded = release_ok_after_loss = 0
    superseded_keys = set()
    for g in holds:
        if g.t_end is None or g.rc_release is None:
            continue   # killed before it could report anything
        lo = bisect.bisect_right(starts, g.t_acq)
        hi = bisect.bisect_left(starts, g.t_end)
        other = next((h for h in holds[lo:hi] if h.pid != g.pid), None)
        if other is None:
            continue
        superseded += 1
        superseded_keys.add(g.key)
        if g.rc_release == MP_OK:
            release_ok_after_loss += 1
        if not g.t_lost and not g.t_lost_late and g.rc_release != MP_ELOST:
            lost_unreported += 1
            example("lost_unreported", f"pid {g.pid} token {g.token} (t={rel(g.t_acq)}s..{rel(g.t_end)}s): "
                                       f"pid {other.pid} acquired token {other.token} at t={rel(other.t_acq)}s; "
                                       f"no on_lost, release returned {code_name(g.rc_release)}", other.t_acq)

    # 4. on_lost more than once for a hold; after mp_lock_release returned (late: the program
    #    may take it for its next hold's); or for a hold that mp_lock_is_held and
    #    mp_lock_release then said was still held, with nobody else holding.
    double_lost = late_lost = inconsistent_lost = 0
    late_after_elost = 0
    for h in holds:
        if len(h.t_lost) + len(h.t_lost_late) > 1:
            double_lost += 1
            example("on_lost_twice", f"pid {h.pid} token {h.token}: on_lost {len(h.t_lost) + len(h.t_lost_late)} "
                                     f"times", (h.t_lost + h.t_lost_late)[1])
        if h.t_lost_late and not h.t_lost:
            late_lost += 1
            late_after_elost += h.rc_release == MP_ELOST
            example("on_lost_after_release", f"pid {h.pid} token {h.token}: mp_lock_release returned "
                                             f"{code_name(h.rc_release)}, on_lost came "
                                             f"{(h.t_lost_late[0] - h.t_release) / 1e6:.1f} ms later", h.t_lost_late[0])
        if h.t_lost and h.held_at_end and h.rc_release == MP_OK and h.key not in superseded_keys:
            inconsistent_lost += 1
            example("on_lost_inconsistent", f"pid {h.pid} token {h.token}: on_lost at t={rel(h.t_lost[0])}s, "
                                            f"then mp_lock_is_held 1 and mp_lock_release MP_OK", h.t_lost[0])
    for w in run.workers:
        late_lost += len(w.log.stray_lost)
        for t in w.log.stray_lost:
            example("on_lost_after_release", f"pid {w.pid}: on_lost before any hold", t)

    # Failovers: from the fault to the next hold (after a holder's SIGKILL: another process's).
    # A hold that ended normally after a sidecar fault, with nobody else holding meanwhile,
    # went on through the sidecar's restart: no failover to measure.
    failover = collections.defaultdict(list)
    survived = collections.Counter()
    for t, kind, d in run.events:
        if kind not in ("kill_holder", "kill_sidecar", "term_sidecar"):
            continue
        pid = d.get("pid", d.get("holder"))
        victim = next((h for h in reversed(holds) if h.pid == pid and h.token == d["token"] and h.t_acq <= t),
                      None)
        lo = bisect.bisect_right(starts, t)
        nxt = next((h for h in holds[lo:] if h.pid != pid or (kind != "kill_holder" and h is not victim)), None)
        if kind != "kill_holder" and victim is not None and victim.t_end is not None and victim.t_end > t \
                and not victim.loss_reported() and victim.rc_release == MP_OK \
                and (nxt is None or nxt.t_acq > victim.t_end):
            survived[kind] += 1
            continue
        if nxt is not None:
            failover[kind].append((nxt.t_acq - t) / NS)

    rejected = sum(h.rejected for h in holds)
    writes = sum(h.writes for h in holds)
    errors = collections.Counter()
    for w in run.workers:
        errors.update(w.log.acquire_errors)
    return {
        "backend": run.backend,
        "ttl": run.ttl,
        "seconds": round((run.t_end - run.t0) / NS, 1),
        "workers": len(run.workers),
        "acquisitions": len(holds),
        "faults": dict(run.fault_counts),
        "violations": {"fencing": fencing, "overlap": overlaps, "lost_unreported": lost_unreported,
                       "on_lost_twice": double_lost, "on_lost_inconsistent": inconsistent_lost},
        "on_lost_late": late_lost,
        "on_lost_late_after_elost": late_after_elost,
        "on_lost_in_next_hold": spilled,
        "overlap_ms_max": round(max(overlap_ms), 1) if overlap_ms else 0,
        "overlaps_explained_by_pause": excused_overlaps,
        "superseded_holds": superseded,
        "release_ok_after_loss": release_ok_after_loss,
        "storage_writes": writes,
        "storage_rejected": rejected,
        "acquire_errors": {code_name(rc): n for rc, n in errors.items()},
        "failover_s": {k: v for k, v in failover.items()},
        "holds_survived_sidecar_restart": dict(survived),
        "worker_crashes": run.crashes,
        "examples": dict(examples),
    }


def fmt_times(v, ttl):
    if not v:
        return "none measured"
    s = sorted(v)
    return (f"n={len(s)} min {s[0]:.2f} s, median {statistics.median(s):.2f} s, max {s[-1]:.2f} s "
            f"(TTL {ttl} s)")


def report(r):
    v = r["violations"]
    lines = [f"== {r['backend']}: {r['acquisitions']} acquisitions by {r['workers']} workers in {r['seconds']} s, "
             f"TTL {r['ttl']} s",
             "   faults: " + ", ".join(f"{k} {n}" for k, n in sorted(r["faults"].items())),
             f"   fencing violations:              {v['fencing']}",
             f"   overlaps not explained by pause: {v['overlap']}"
             + (f" (longest {r['overlap_ms_max']} ms)" if v["overlap"] else "")
             + f"; explained by a SIGSTOP: {r['overlaps_explained_by_pause']}",
             f"   holds lost without on_lost/MP_ELOST: {v['lost_unreported']} "
             f"(of {r['superseded_holds']} superseded; release returned MP_OK for {r['release_ok_after_loss']})",
             f"   on_lost more than once:          {v['on_lost_twice']}",
             f"   on_lost, yet still held:         {v['on_lost_inconsistent']}",
             f"   (not violations) on_lost after mp_lock_release returned: {r['on_lost_late']} "
             f"({r['on_lost_late_after_elost']} after MP_ELOST), of which during the next hold: "
             f"{r['on_lost_in_next_hold']}",
             f"   storage: {r['storage_writes']} writes, {r['storage_rejected']} rejected as stale",
             "   acquire errors: " + (", ".join(f"{k} {n}" for k, n in sorted(r["acquire_errors"].items()))
                                      or "none")]
    for kind, label in (("kill_holder", "holder SIGKILL"), ("kill_sidecar", "sidecar SIGKILL"),
                        ("term_sidecar", "sidecar SIGTERM")):
        lines.append(f"   failover after {label}: {fmt_times(r['failover_s'].get(kind), r['ttl'])}")
    if r["holds_survived_sidecar_restart"]:
        lines.append("   holds that went on through a sidecar restart: " +
                     ", ".join(f"{k} {n}" for k, n in r["holds_survived_sidecar_restart"].items()))
    if r["worker_crashes"]:
        lines.append("   workers that exited by themselves: " + ", ".join(r["worker_crashes"]))
    for kind, texts in r["examples"].items():
        for text in texts:
            lines.append(f"   e.g. {kind}: {text}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", required=True, help="chaos_worker binary")
    ap.add_argument("--sidecar", default=os.environ.get("MP_SIDECAR_BIN"), help="mp-sidecar binary")
    ap.add_argument("--backends", default="memory,lease,kubernetes")
    ap.add_argument("--duration", type=float, default=25, help="seconds of faults per backend")
    ap.add_argument("--acquisitions", type=int, help="long mode: run each backend until this many holds")
    ap.add_argument("--max-duration", type=float, default=3600, help="long mode: stop a backend after this")
    ap.add_argument("--ttl", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--cs-ms", default="5:30", help="critical section length, MIN:MAX ms")
    ap.add_argument("--gap-ms", default="0:10", help="pause between a release and the next acquire, MIN:MAX ms")
    ap.add_argument("--fault-gap", type=float, nargs=2, default=(0.3, 1.2), metavar=("MIN", "MAX"),
                    help="seconds between faults (after the previous one's failover)")
    ap.add_argument("--min-acquisitions", type=int, default=20,
                    help="fail when a backend had fewer holds than this (the run proved nothing)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--keep", help="keep the logs in this directory (default: a temporary one, removed)")
    ap.add_argument("--json", help="write the figures as JSON to this file")
    args = ap.parse_args(argv)
    if not args.sidecar:
        ap.error("--sidecar (or $MP_SIDECAR_BIN) is required")
    for what, path in (("--worker", args.worker), ("--sidecar", args.sidecar)):
        if not os.access(path, os.X_OK):
            ap.error(f"{what} {path} is not an executable file (build it first)")
    os.environ["MP_SIDECAR_BIN"] = args.sidecar   # for mp_sidecar.Sidecar
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print(f"chaos: seed {seed} (rerun with --seed {seed})", flush=True)

    base = args.keep or tempfile.mkdtemp(prefix="mp-chaos-")
    os.makedirs(base, exist_ok=True)
    results, failures = [], []
    for i, backend in enumerate(b for b in args.backends.split(",") if b):
        run_dir = os.path.join(base, backend)
        shutil.rmtree(run_dir, ignore_errors=True)
        os.makedirs(run_dir)
        run = Run(backend, args, random.Random(seed + i), run_dir)
        try:
            run.setup()
            run.run()
        finally:
            problems = run.teardown()
        r = analyze(run)
        results.append(r)
        print(report(r), flush=True)
        for p in problems:
            print(f"   teardown: {p}")
        if any(r["violations"].values()):
            failures.append(f"{backend}: violations {r['violations']}")
        if r["worker_crashes"]:
            failures.append(f"{backend}: workers exited by themselves: {', '.join(r['worker_crashes'])} "
                            f"(see {run_dir}/workers.out)")
        missing = [k for k in run.fault_kinds() if not r["faults"].get(k)]
        if missing:
            failures.append(f"{backend}: faults never injected: {', '.join(missing)} (run longer)")
        if r["acquisitions"] < args.min_acquisitions:
            failures.append(f"{backend}: only {r['acquisitions']} acquisitions (see {run_dir})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": seed, "results": results}, f, indent=1)
    if not args.keep:
        if failures:
            print(f"chaos: logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    if failures:
        print("chaos: FAILED\n  " + "\n  ".join(failures))
        return 1
    print("chaos: no violations")
    return 0


if __name__ == "__main__":
    sys.exit(main())
