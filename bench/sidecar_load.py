#!/usr/bin/env python3
"""mp-sidecar under load (issue 9, "Benchmarks"): waiters, slowloris, RSS, throughput.

Starts its own mp-sidecar (memory backend) on 127.0.0.1 for each scenario and
prints every figure:

  waiters     N concurrent long-polls (PUT ?wait=) on one lock, enqueued one by
              one (each confirmed parked through /metrics, so the enqueue order
              is known); the holder releases and every waiter releases as soon as
              it is granted. Checks FIFO order, strictly increasing tokens, no
              error or reset; prints handover p50/p99 (client side: from the
              previous holder's DELETE being sent to the next waiter's 200 being
              read) and the sidecar's CPU (utime+stime, /proc/PID/stat) per
              handover at each N.
  slowloris   M sockets each sending one byte of a request head every 5 s
              (reconnecting when the sidecar answers 408 and closes), in a child
              process; the p99 of a normal acquire+release (PUT + DELETE) during
              the attack vs idle, on a keep-alive connection and on a new
              connection per pair.
  rss         VmRSS idle, with 10,000 held locks, and after 100,000 names were
              acquired and released (sidecar run with --reclaim-after 1).
  throughput  uncontended PUT+DELETE at 4 and 64 keep-alive connections with
              wrk (C, 2 threads; a Lua script alternates PUT and DELETE per name
              and reuses a name only after its DELETE answered). A Python client
              cannot load the sidecar: it costs more CPU per request than the
              sidecar itself does. Without wrk (apt-get install wrk) this
              scenario is skipped.

Python standard library only (asyncio): one process holds 10,000 connections.
The HTTP/1.1 reading here is deliberately minimal and strict: the peer is our
own sidecar, which always sends Content-Length; anything else is an error.

Usage: bench/sidecar_load.py --sidecar-bin build/sidecar/mp-sidecar [--only waiters,rss]
Everything is bounded in time and count; see --help for the knobs.
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
FAILURES = []  # correctness problems seen (the figures themselves are not judged)


def pct(values, p):
    """The p-th percentile (nearest rank) of values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def ms(seconds):
    return f"{seconds * 1000:.2f} ms"


def loadavg():
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------------------
# The sidecar under test.

class Sidecar:
    def __init__(self, binary, extra=()):
        self.state_dir = tempfile.mkdtemp(prefix="mp-load-")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--state-dir", self.state_dir, "--log-level", "warn", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.proc.kill()
            raise SystemExit(f"mp-sidecar did not start: {line!r} {self.proc.stderr.read()!r}")
        self.port = int(m.group(1))
        self.pid = self.proc.pid

    def cpu_seconds(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def metric(self, name):
        with socket.create_connection(("127.0.0.1", self.port)) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        m = re.search(rb"^" + name.encode() + rb" (\d+)$", data, re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return self.proc.returncode, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc, err = self.stop()
        if rc != 0:
            print(f"  !! mp-sidecar exited {rc}: {err.strip()[-2000:]}")


# ---------------------------------------------------------------------------
# A keep-alive HTTP/1.1 connection (asyncio).

class HttpError(Exception):
    pass


class Conn:
    @classmethod
    async def open(cls, port):
        c = cls()
        c.reader, c.writer = await asyncio.open_connection("127.0.0.1", port)
        return c

    def send(self, method, path, body=None):
        data = body.encode() if isinstance(body, str) else (body or b"")
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if data:
            head += "Content-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n\r\n"
        self.writer.write(head.encode() + data)

    async def read(self):
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"bad status line {lines[0]!r}")
        length = None
        for line in lines[1:]:
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        if length is None:
            raise HttpError("response without Content-Length")
        body = await self.reader.readexactly(length)
        return int(parts[1]), body

    async def request(self, method, path, body=None):
        self.send(method, path, body)
        return await self.read()

    def close(self):
        self.writer.close()


def lock_body(owner, ttl):
    return json.dumps({"owner": owner, "ttlSeconds": ttl})


# ---------------------------------------------------------------------------
# 1. Waiters on one lock.

async def waiters_round(sc, n, lock, ctl, stats):
    holder = await Conn.open(sc.port)
    status, body = await holder.request("PUT", f"/locks/{lock}", lock_body("holder", 300))
    if status != 200:
        raise HttpError(f"holder PUT answered {status}: {body!r}")
    token0 = json.loads(body)["token"]

    conns = []
    for i in range(0, n, 250):  # connect in batches: the listen backlog is 1024
        conns += await asyncio.gather(*(Conn.open(sc.port) for _ in range(min(250, n - i))))

    async def parked_count():
        st, b = await ctl.request("GET", "/metrics")
        m = re.search(rb"^mp_sidecar_waiters (\d+)$", b, re.M)
        return int(m.group(1))

    base = await parked_count()
    # Enqueue one by one; each is confirmed parked before the next is sent,
    # so the sidecar's queue order is known to be 0, 1, 2, ...
    for i, c in enumerate(conns):
        c.send("PUT", f"/locks/{lock}?wait=300", lock_body(f"w{i}", 300))
        for _ in range(20000):
            if await parked_count() >= base + i + 1:
                break
            await asyncio.sleep(0)
        else:
            raise HttpError(f"waiter {i} was never parked")

    grants = []       # (waiter index, token) in the order the 200s were read
    release_at = {}   # waiter index (-1 = holder) -> when its DELETE was sent
    grant_at = {}
    errors = []

    async def waiter(i, c):
        try:
            status, body = await c.read()
            grant_at[i] = time.perf_counter()
            if status != 200:
                raise HttpError(f"waiter {i}: PUT answered {status}: {body[:200]!r}")
            rec = json.loads(body)
            if rec["owner"] != f"w{i}":
                raise HttpError(f"waiter {i} got a grant for {rec['owner']!r}")
            grants.append((i, rec["token"]))
            release_at[i] = time.perf_counter()
            status, body = await c.request("DELETE", f"/locks/{lock}?owner=w{i}&token={rec['token']}")
            if status != 200:
                raise HttpError(f"waiter {i}: DELETE answered {status}: {body[:200]!r}")
        except (OSError, asyncio.IncompleteReadError, HttpError, ValueError, KeyError) as e:
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            c.close()

    stats["rss_parked"] = max(stats.get("rss_parked", 0), sc.rss_kb())
    tasks = [asyncio.create_task(waiter(i, c)) for i, c in enumerate(conns)]
    for _ in range(3):  # let every task reach its read, so the first handover does not wait for them
        await asyncio.sleep(0)
    handovers0 = sc.metric("mp_sidecar_handovers_total")
    cpu0 = sc.cpu_seconds()
    t0 = time.perf_counter()
    release_at[-1] = t0
    status, body = await holder.request("DELETE", f"/locks/{lock}?owner=holder&token={token0}")
    if status != 200:
        errors.append(f"holder DELETE answered {status}")
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(60, n * 0.05))
    t1 = time.perf_counter()
    cpu1 = sc.cpu_seconds()
    holder.close()

    stats["handovers"] += sc.metric("mp_sidecar_handovers_total") - handovers0
    stats["cpu"] += cpu1 - cpu0
    stats["wall"] += t1 - t0
    stats["errors"] += errors
    order = [i for i, _ in grants]
    tokens = [token0] + [t for _, t in grants]
    if order != list(range(n)):
        first_bad = next((k for k, i in enumerate(order) if i != k), len(order))
        stats["fifo_violations"].append(f"{n}: grant #{first_bad} went to {order[first_bad:first_bad + 3]}")
    if any(b <= a for a, b in zip(tokens, tokens[1:])):
        stats["token_violations"] += 1
    for i in range(n):
        if i in grant_at and (i - 1) in release_at:
            stats["latencies"].append(grant_at[i] - release_at[i - 1])
            stats["slowest"].append((grant_at[i] - release_at[i - 1], i, grant_at[i] - t0))
    stats["slowest"] = sorted(stats["slowest"], reverse=True)[:3]
    stats["grants"] += len(grants)


async def waiters_scenario(sc, n, rounds):
    ctl = await Conn.open(sc.port)
    stats = dict(handovers=0, cpu=0.0, wall=0.0, errors=[], fifo_violations=[], token_violations=0,
                 latencies=[], grants=0, slowest=[])
    for r in range(rounds):
        await waiters_round(sc, n, f"fifo-{n}-{r}", ctl, stats)
    ctl.close()
    return stats


def run_waiters(args):
    print(f"== 1. waiters on one lock (FIFO handover); {loadavg()}")
    rows = []
    for n in args.waiters:
        rounds = max(1, args.min_handovers // n)
        with Sidecar(args.sidecar_bin) as sc:
            t = time.perf_counter()
            stats = asyncio.run(waiters_scenario(sc, n, rounds))
            resets = sum("Reset" in e or "Broken" in e for e in stats["errors"])
            lat = stats["latencies"]
            per = stats["cpu"] / max(1, stats["handovers"])
            print(f"  N={n:>6} x {rounds:>2} round(s): {stats['grants']} grants, handovers (sidecar) "
                  f"{stats['handovers']}, FIFO {'ok' if not stats['fifo_violations'] else 'VIOLATED'}, "
                  f"tokens {'increasing' if not stats['token_violations'] else 'NOT INCREASING'}, "
                  f"errors {len(stats['errors'])}, resets {resets}")
            print(f"           handover p50 {ms(pct(lat, 50))}  p99 {ms(pct(lat, 99))}  max {ms(max(lat) if lat else 0)}; "
                  f"sidecar CPU {per * 1e6:.1f} us/handover ({stats['cpu']:.2f} s over {stats['wall']:.2f} s); "
                  f"sidecar RSS with the waiters parked {stats['rss_parked'] / 1024:.1f} MB; "
                  f"run {time.perf_counter() - t:.1f} s")
            print("           slowest: " + ", ".join(f"{ms(d)} (waiter {i}, {at:.2f} s into the round)"
                                                for d, i, at in stats["slowest"]))
            for e in stats["errors"][:5] + stats["fifo_violations"][:5]:
                print(f"           !! {e}")
            rows.append((n, per))
            if stats["errors"] or stats["fifo_violations"] or stats["token_violations"] or stats["grants"] != n * rounds:
                FAILURES.append(f"waiters N={n}: errors, lost grants or FIFO/token violations")
    if len(rows) > 1:
        print("  CPU per handover relative to N=%d: %s" % (
            rows[0][0], ", ".join(f"N={n}: {p / rows[0][1]:.2f}x" for n, p in rows)))
    print(f"  ({loadavg()})")


# ---------------------------------------------------------------------------
# 2. Slowloris.

def slowloris(port, sockets, interval, duration, ready, result):
    """Child process: keep `sockets` connections each trickling a request head."""
    raise_nofile()
    head = (b"PUT /locks/slowloris HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"X-Padding: " + b"a" * 200 + b"\r\n\r\n")
    sel = selectors.DefaultSelector()
    state = {}  # socket -> bytes sent
    stats = dict(connects=0, answers_408=0, other=0, refused=0)

    def connect():
        s = socket.socket()
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            stats["refused"] += 1
            s.close()
            return
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        state[s] = 0
        stats["connects"] += 1

    for _ in range(sockets):
        connect()
    ready.set()
    end = time.monotonic() + duration
    step = interval / max(1, sockets)  # spread the bytes evenly over the interval
    next_send = time.monotonic()
    order = list(state)
    k = 0
    while time.monotonic() < end:
        now = time.monotonic()
        while next_send <= now and order:
            s = order[k % len(order)]
            k += 1
            next_send += step
            if s in state:
                try:
                    s.send(head[state[s] % len(head):state[s] % len(head) + 1])
                    state[s] += 1
                except OSError:
                    pass
        for key, _ in sel.select(timeout=max(0.0, min(next_send - time.monotonic(), 0.05))):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 408"):
                stats["answers_408"] += 1
            elif data:
                stats["other"] += 1
            sel.unregister(s)
            s.close()
            del state[s]
            connect()  # an attacker keeps its sockets
            order = list(state)
    result.update(stats, open_at_end=len(state))
    for s in list(state):
        s.close()


async def acquire_release_pairs(port, count, seconds, fresh):
    lat = []
    errors = 0
    conn = None if fresh else await Conn.open(port)
    end = time.perf_counter() + seconds
    for i in range(count):
        if time.perf_counter() > end:
            break
        t = time.perf_counter()
        try:
            c = await Conn.open(port) if fresh else conn
            s1, b = await c.request("PUT", "/locks/probe", lock_body("probe", 15))
            token = json.loads(b)["token"] if s1 == 200 else 0
            s2, _ = await c.request("DELETE", f"/locks/probe?owner=probe&token={token}")
            if fresh:
                c.close()
            if s1 != 200 or s2 != 200:
                errors += 1
                continue
        except (OSError, asyncio.IncompleteReadError, HttpError, ValueError) as e:
            errors += 1
            if not fresh:
                conn = await Conn.open(port)
            continue
        lat.append(time.perf_counter() - t)
    if conn:
        conn.close()
    return lat, errors


def run_slowloris(args):
    print(f"== 2. slowloris: {args.slowloris_sockets} sockets, one byte each every {args.slowloris_interval:g} s; "
          f"{loadavg()}")
    with Sidecar(args.sidecar_bin) as sc:
        res = {}
        # Idle before and after the attack, to see how noisy the machine is.
        for phase in ("idle", "attack", "after"):
            proc = None
            if phase == "attack":
                mgr = multiprocessing.Manager()
                result = mgr.dict()
                ready = multiprocessing.Event()
                duration = args.slowloris_seconds + 2 * args.slowloris_interval + 5
                proc = multiprocessing.Process(target=slowloris, args=(
                    sc.port, args.slowloris_sockets, args.slowloris_interval, duration, ready, result))
                proc.start()
                ready.wait(60)
                time.sleep(args.slowloris_interval)  # every socket has sent its first byte
                conns = sc.metric("mp_sidecar_connections")
            cpu0, t0 = sc.cpu_seconds(), time.perf_counter()
            ka = asyncio.run(acquire_release_pairs(sc.port, args.pairs, args.slowloris_seconds / 2, False))
            fr = asyncio.run(acquire_release_pairs(sc.port, args.pairs, args.slowloris_seconds / 2, True))
            cpu = (sc.cpu_seconds() - cpu0) / (time.perf_counter() - t0)
            res[phase] = (ka, fr)
            if ka[1] or fr[1]:
                FAILURES.append(f"slowloris {phase}: {ka[1] + fr[1]} acquire+release errors")
            print(f"  {phase:>6}: keep-alive PUT+DELETE p50 {ms(pct(ka[0], 50))} p99 {ms(pct(ka[0], 99))} "
                  f"({len(ka[0])} pairs, {ka[1]} errors); new connection per pair p50 {ms(pct(fr[0], 50))} "
                  f"p99 {ms(pct(fr[0], 99))} ({len(fr[0])} pairs, {fr[1]} errors); sidecar CPU {cpu * 100:.0f}% of a core")
            if proc:
                print(f"          sidecar connections during the attack: {conns}")
                proc.join(duration + 30)
                r = dict(result)
                print(f"          attacker: {r.get('connects')} connects, {r.get('answers_408')} answered 408, "
                      f"{r.get('other')} other answers, {r.get('refused')} refused, "
                      f"{r.get('open_at_end')} open at the end; sidecar request timeouts "
                      f"{sc.metric('mp_sidecar_request_timeouts_total')}")
                mgr.shutdown()
        for k, label in ((0, "keep-alive"), (1, "new connection")):
            idle = max(pct(res["idle"][k][0], 99), pct(res["after"][k][0], 99))
            attack = pct(res["attack"][k][0], 99)
            print(f"  p99 attack / idle (the worse of before and after) ({label}): {attack / idle:.2f}x (target <= 2x)")
    print(f"  ({loadavg()})")


# ---------------------------------------------------------------------------
# 3. RSS.

async def pipelined(port, groups, conns=4, batch=100):
    """Send groups of (method, path, body) requests, pipelined in batches of
    `batch` groups over `conns` connections; a group stays on one connection,
    in order. Returns {status: count}."""
    counts = {}

    async def worker(part):
        c = await Conn.open(port)
        for i in range(0, len(part), batch):
            chunk = [r for group in part[i:i + batch] for r in group]
            for m, p, b in chunk:
                c.send(m, p, b)
            for _ in chunk:
                status, _ = await c.read()
                counts[status] = counts.get(status, 0) + 1
        c.close()

    await asyncio.gather(*(worker(groups[k::conns]) for k in range(conns)))
    return counts


def list_all(port):
    async def go():
        c = await Conn.open(port)
        total, cont, pages = 0, "", 0
        while True:
            status, body = await c.request("GET", f"/locks?limit=1000&continue={cont}")
            if status != 200:
                raise HttpError(f"GET /locks answered {status}")
            page = json.loads(body)
            total += len(page["items"])
            pages += 1
            cont = page["continue"]
            if not cont:
                break
        c.close()
        return total, pages
    return asyncio.run(go())


def run_rss(args):
    print(f"== 3. RSS (--reclaim-after 1); {loadavg()}")
    with Sidecar(args.sidecar_bin, ["--reclaim-after", "1", "--max-locks", str(2 * args.rss_names)]) as sc:
        time.sleep(0.5)
        idle = sc.rss_kb()
        print(f"  idle: {idle / 1024:.1f} MB")
        held = [[("PUT", f"/locks/held-{i}", lock_body("rss", 3600))] for i in range(args.rss_held)]
        counts = asyncio.run(pipelined(sc.port, held))
        rss_held = sc.rss_kb()
        t = time.perf_counter()
        total, pages = list_all(sc.port)
        print(f"  {args.rss_held} held locks: {rss_held / 1024:.1f} MB (answers {counts}); GET /locks paged: "
              f"{total} locks in {pages} pages, {ms(time.perf_counter() - t)}, RSS then {sc.rss_kb() / 1024:.1f} MB")
        release = [[("DELETE", f"/locks/held-{i}?owner=rss", None)] for i in range(args.rss_held)]
        asyncio.run(pipelined(sc.port, release))
        peak = 0
        counts = {}
        t = time.perf_counter()
        step = 10000
        for start in range(0, args.rss_names, step):
            pairs = [[("PUT", f"/locks/name-{i}", lock_body("rss", 60)), ("DELETE", f"/locks/name-{i}?owner=rss", None)]
                     for i in range(start, min(start + step, args.rss_names))]
            for k, v in asyncio.run(pipelined(sc.port, pairs)).items():
                counts[k] = counts.get(k, 0) + v
            peak = max(peak, sc.rss_kb())
        used = time.perf_counter() - t
        if set(counts) != {200}:
            FAILURES.append(f"rss: answers {counts}")
        time.sleep(3)  # past --reclaim-after 1 (the reclaim timer runs per name at release + 1 s)
        total, _ = list_all(sc.port)
        after = sc.rss_kb()
        print(f"  after {args.rss_names} names acquired+released ({used:.1f} s, answers {counts}): peak "
              f"{peak / 1024:.1f} MB; 3 s later {after / 1024:.1f} MB ({after / idle:.2f}x idle), "
              f"{total} lock records left")
    print(f"  ({loadavg()})")


# ---------------------------------------------------------------------------
# 4. Throughput with wrk.

WRK_SCRIPT = r"""
-- PUT then DELETE per name, uncontended: a name is used again only after its
-- DELETE answered, so each connection alternates PUT and DELETE.
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end
local free, granted, counter = {}, {}, 0
bad = 0  -- global: done() reads it through thread:get()
local body = '{"owner":"bench","ttlSeconds":60}'
local hdrs = {["Content-Type"] = "application/json"}
function request()
  local n = table.remove(granted)
  if n then return wrk.format("DELETE", "/locks/" .. n .. "?owner=bench") end
  n = table.remove(free)
  if not n then counter = counter + 1; n = "t" .. tid .. "-" .. counter end
  return wrk.format("PUT", "/locks/" .. n, hdrs, body)
end
function response(status, headers, b)
  if status ~= 200 then bad = bad + 1; return end
  local name = b:match('"name":"([^"]*)"')
  if b:find('"held":true', 1, true) then table.insert(granted, name) else table.insert(free, name) end
end
function done(summary, latency, requests)
  local nbad = 0
  for _, t in ipairs(threads) do nbad = nbad + t:get("bad") end
  io.write(string.format("RESULT requests=%d seconds=%.3f p50_us=%d p99_us=%d p999_us=%d non200=%d errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), nbad, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout))
end
"""


def run_throughput(args):
    wrk = shutil.which("wrk")
    print(f"== 4. throughput, uncontended PUT+DELETE (wrk, 2 threads, {args.throughput_seconds:g} s each)")
    if not wrk:
        print("  skipped: wrk is not installed (apt-get install wrk); a Python client cannot load the sidecar")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
        script = f.name
    try:
        for c in args.connections:
            with Sidecar(args.sidecar_bin) as sc:
                before = loadavg()
                cpu0 = sc.cpu_seconds()
                out = subprocess.run([wrk, "-t", str(min(2, c)), "-c", str(c), "-d", f"{args.throughput_seconds:g}s",
                                      "--timeout", "5s", "-s", script, f"http://127.0.0.1:{sc.port}"],
                                     capture_output=True, text=True, timeout=args.throughput_seconds + 60)
                cpu = sc.cpu_seconds() - cpu0
                m = re.search(r"RESULT (.*)", out.stdout)
                if not m:
                    print(f"  c={c}: wrk failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
                    continue
                r = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
                print(f"  c={c:>3}: {r['requests'] / r['seconds']:,.0f} req/s, p50 {r['p50_us'] / 1000:.2f} ms, "
                      f"p99 {r['p99_us'] / 1000:.2f} ms, p99.9 {r['p999_us'] / 1000:.2f} ms, non-200 "
                      f"{int(r['non200'])}, socket errors {int(r['errors'])}")
                if r["non200"] or r["errors"]:
                    FAILURES.append(f"throughput c={c}: {int(r['non200'])} non-200, {int(r['errors'])} socket errors")
                print(f"         sidecar CPU {cpu / r['seconds'] * 100:.0f}% of a core, "
                      f"{cpu / max(1, r['requests']) * 1e6:.1f} us per request; before: {before}; after: {loadavg()}")
    finally:
        os.unlink(script)
    print("  (issue 9, old server: 38,873 req/s at c=4 p99 1.9 ms; 34,072 req/s at c=32 p99 8.5 ms)")


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sidecar-bin", required=True, help="the mp-sidecar to measure")
    ap.add_argument("--only", default="waiters,slowloris,rss,throughput",
                    help="comma-separated scenarios (default: all)")
    ap.add_argument("--waiters", default="100,1000,10000", help="waiter counts (default: 100,1000,10000)")
    ap.add_argument("--min-handovers", type=int, default=5000,
                    help="repeat small rounds up to this many handovers, for the CPU clock's 10 ms resolution")
    ap.add_argument("--slowloris-sockets", type=int, default=1000)
    ap.add_argument("--slowloris-interval", type=float, default=5.0)
    ap.add_argument("--slowloris-seconds", type=float, default=30.0,
                    help="how long the probe measures in each phase (half keep-alive, half new connections)")
    ap.add_argument("--pairs", type=int, default=5000, help="most acquire+release pairs per probe")
    ap.add_argument("--rss-held", type=int, default=10000)
    ap.add_argument("--rss-names", type=int, default=100000)
    ap.add_argument("--connections", default="4,64")
    ap.add_argument("--throughput-seconds", type=float, default=10.0)
    args = ap.parse_args()
    args.waiters = [int(x) for x in args.waiters.split(",") if x]
    args.connections = [int(x) for x in args.connections.split(",") if x]
    nofile = raise_nofile()
    need = max(args.waiters + [args.slowloris_sockets]) + 100
    if nofile < need:
        raise SystemExit(f"RLIMIT_NOFILE is {nofile}, {need} descriptors are needed: raise the hard limit (ulimit -Hn)")
    print(f"mp-sidecar under load: {args.sidecar_bin}; {os.cpu_count()} CPUs; {loadavg()}")
    scenarios = {"waiters": run_waiters, "slowloris": run_slowloris, "rss": run_rss, "throughput": run_throughput}
    for name in args.only.split(","):
        if name not in scenarios:
            raise SystemExit(f"unknown scenario {name!r}; choose from {', '.join(scenarios)}")
        scenarios[name](args)
    if FAILURES:
        print("FAILED: " + "; ".join(FAILURES))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
