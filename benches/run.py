#!/usr/bin/env python3
"""gort benchmark runner: builds gort and its peers (tokio, may, Go, raw epoll),
runs the echo and micro matrices, and writes docs/benchmarks.md plus the chart
docs/bench-echo.svg.

    python3 benches/run.py            # full matrix (~15-20 min on 2 cores)
    python3 benches/run.py --quick    # smoke test (~2-3 min), 1 repetition

Python 3.11 standard library only; the SVG is written by hand. Everything runs
on 127.0.0.1, every child has a time bound, and the runner only ever kills the
processes it started, by PID (subprocess.Popen.kill), and reaps them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS = HERE / "peers"
PEERS_BIN = PEERS / "target" / "release"
GO_SRC = PEERS / "go"
GO_BIN = PEERS / "target" / "go"
LOADGEN = HERE / "loadgen" / "target" / "release" / "loadgen"
GORT_EX = ROOT / "target" / "release" / "examples"
RESULTS = HERE / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SERVERS = ["gort", "tokio", "may", "go", "epoll"]
MICRO_PEERS = ["gort", "tokio", "may", "go"]
# (subcommand, N in full mode, N in quick mode); None = program default.
MICRO = [
    ("spawn_join_batch", 1_000_000, 100_000),
    ("spawn_join_all", 1_000_000, 100_000),
    ("chan_pingpong", 1_000_000, 100_000),
    ("parked", 100_000, 10_000),
    ("parked", 1_000_000, 100_000),
    ("timers", 100_000, 10_000),
    ("fanin", 1_000_000, 100_000),
    ("mutex", 1_000_000, 100_000),
]
# Primary metric of each micro benchmark and whether lower is better.
MICRO_METRIC = {
    "spawn_join_batch": ("ns_per_op", "ns/op", True),
    "spawn_join_all": ("ns_per_op", "ns/op", True),
    "chan_pingpong": ("ns_per_op", "ns/round trip", True),
    "parked": ("kib_per_task", "KiB/task", True),
    "timers": ("total_ms", "ms total", True),
    "fanin": ("msgs_per_sec", "msgs/s", False),
    "mutex": ("ns_per_op", "ns/op", True),
}

T0 = time.monotonic()
SKIPPED: list[str] = []


def log(msg: str) -> None:
    el = int(time.monotonic() - T0)
    print(f"[{el // 60:02d}:{el % 60:02d}] {msg}", flush=True)


def skip(msg: str) -> None:
    SKIPPED.append(msg)
    log("SKIP: " + msg)


def sh(cmd: list[str], cwd: Path = ROOT, timeout: float = 900, env: dict | None = None) -> tuple[int, str]:
    """Runs a command to completion (bounded); returns (rc, combined output)."""
    try:
        p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout, env=env)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return 124, out + f"\n(timed out after {timeout}s)"
    except OSError as e:
        return 127, str(e)


def tail(s: str, n: int = 6) -> str:
    return "\n".join("    " + l for l in s.strip().splitlines()[-n:])


# --------------------------------------------------------------------------- build

def ensure_go(allow_install: bool) -> str | None:
    go = shutil.which("go") or (("/usr/lib/go/bin/go") if Path("/usr/lib/go/bin/go").exists() else None)
    if go:
        return go
    if not allow_install:
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log("go not found and cannot apt-get install it (not root or no apt-get)")
        return None
    log("go not found: installing with apt-get install -y golang (bounded to 10 min)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    rc, out = sh(["apt-get", "update", "-qq"], timeout=300, env=env)
    if rc == 0:
        rc, out = sh(["apt-get", "install", "-y", "-qq", "golang"], timeout=600, env=env)
    if rc != 0:
        log("apt-get install golang failed:\n" + tail(out))
    return shutil.which("go")


def build(args) -> dict:
    """Builds everything; returns {name: available} plus tool paths."""
    avail = {}
    log("building peers (cargo build --release, benches/peers)")
    rc, out = sh(["cargo", "build", "--release", "--manifest-path", str(PEERS / "Cargo.toml")], timeout=1200)
    if rc != 0:
        sys.exit("peers failed to build:\n" + tail(out, 30))
    avail["tokio"] = avail["may"] = avail["epoll"] = True
    log("building loadgen (cargo build --release, benches/loadgen)")
    rc, out = sh(["cargo", "build", "--release", "--manifest-path", str(HERE / "loadgen" / "Cargo.toml")], timeout=600)
    if rc != 0:
        sys.exit("loadgen failed to build:\n" + tail(out, 30))

    go = ensure_go(not args.no_install_go)
    avail["go"] = False
    if go is None:
        skip("Go: `go` is not installed and could not be installed; Go rows skipped")
    else:
        GO_BIN.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GO111MODULE="off", GOFLAGS="", CGO_ENABLED="0")
        env.setdefault("GOCACHE", str(PEERS / "target" / "go-cache"))
        ok = True
        for prog in ("echo", "micro"):
            log(f"building Go {prog} (go build {prog}.go)")
            rc, out = sh([go, "build", "-o", str(GO_BIN / prog), f"{prog}.go"], cwd=GO_SRC, timeout=600, env=env)
            if rc != 0:
                ok = False
                skip(f"Go: go build {prog}.go failed; Go rows skipped:\n" + tail(out))
        avail["go"] = ok
    avail["go_path"] = go

    avail["gort"] = avail["gort_micro"] = False
    for ex, key in (("bench_echo", "gort"), ("bench_micro", "gort_micro")):
        log(f"building gort example {ex} (cargo build --release --example {ex})")
        rc, out = sh(["cargo", "build", "--release", "--example", ex], cwd=ROOT, timeout=1200)
        if rc != 0 or not (GORT_EX / ex).exists():
            skip(f"gort: `cargo build --release --example {ex}` failed or produced no binary; "
                 f"gort {'echo' if key == 'gort' else 'micro'} rows skipped:\n" + tail(out, 3))
        else:
            avail[key] = True
    return avail


def server_argv(name: str) -> list[str]:
    return {
        "gort": [str(GORT_EX / "bench_echo")],
        # Idle rows only: the handler's buffer a `[u8; 4096]` in its frame (see bench_echo.rs).
        "gort-array": [str(GORT_EX / "bench_echo"), "array"],
        "tokio": [str(PEERS_BIN / "tokio_echo")],
        "may": [str(PEERS_BIN / "may_echo")],
        "go": [str(GO_BIN / "echo")],
        "epoll": [str(PEERS_BIN / "epoll_echo")],
    }[name]


def micro_argv(name: str) -> list[str]:
    return {
        "gort": [str(GORT_EX / "bench_micro")],
        "tokio": [str(PEERS_BIN / "tokio_micro")],
        "may": [str(PEERS_BIN / "may_micro")],
        "go": [str(GO_BIN / "micro")],
    }[name]


# --------------------------------------------------------------------------- /proc

def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])  # fields 14 and 15


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def parse_kv(line: str) -> dict:
    """Parses `RESULT k=v k="quoted v" ...` into a dict (numbers converted)."""
    d = {}
    for m in re.finditer(r'(\w+)=("([^"]*)"|\S+)', line):
        k, raw, q = m.group(1), m.group(2), m.group(3)
        if q is not None:
            d[k] = q
        else:
            try:
                d[k] = float(raw) if any(c in raw for c in ".e") else int(raw)
            except ValueError:
                d[k] = raw
    return d


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process started by us; stopped by PID and reaped."""

    def __init__(self, name: str, logdir: Path):
        self.name = name
        self.proc = None
        for attempt in range(5):
            self.port = free_port()
            logf = open(logdir / f"{name}.log", "ab")
            self.proc = subprocess.Popen(server_argv(name) + [str(self.port)], stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf, cwd=ROOT)
            logf.close()
            if self._wait_ready(5.0):
                return
            self.stop()
        raise RuntimeError(f"{name} server did not start listening (see {logdir / (name + '.log')})")

    def _wait_ready(self, secs: float) -> bool:
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.05)  # let the server drop the probe connection
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL to this PID only
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"warning: {self.name} (pid {self.proc.pid}) did not exit after SIGKILL")


def run_loadgen(argv: list[str], limit: float, on_line) -> tuple[dict | None, str]:
    """Runs loadgen, calling on_line(line) for each stdout line; bounded by `limit` s."""
    p = subprocess.Popen([str(LOADGEN)] + argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         stdin=subprocess.DEVNULL)
    timer = threading.Timer(limit, p.kill)  # kills only this PID
    timer.start()
    result = None
    try:
        for line in p.stdout:
            line = line.strip()
            on_line(line)
            if line.startswith("RESULT"):
                result = parse_kv(line)
    finally:
        timer.cancel()
        err = p.stderr.read()
        p.wait()
    if result is None:
        err += f" (loadgen exit {p.returncode})"
    return result, err.strip()


# --------------------------------------------------------------------------- echo

def echo_once(name: str, conns: int, size: int, warmup: float, duration: float, logdir: Path) -> dict:
    srv = Server(name, logdir)
    try:
        rss0 = status_kib(srv.pid, "VmRSS")
        marks = {}

        def on_line(line: str) -> None:
            if line in ("MEASURE_START", "MEASURE_END"):
                try:
                    marks[line] = (time.monotonic(), cpu_ticks(srv.pid))
                except OSError:
                    pass  # server gone; reported as an error below

        args = ["--addr", f"127.0.0.1:{srv.port}", "--conns", str(conns), "--size", str(size),
                "--duration", str(duration), "--warmup", str(warmup)]
        res, err = run_loadgen(args, limit=warmup + duration + 120, on_line=on_line)
        alive = srv.proc.poll() is None
        try:
            hwm = status_kib(srv.pid, "VmHWM") if alive else 0
        except OSError:
            alive, hwm = False, 0
    finally:
        srv.stop()
    if res is None or "MEASURE_START" not in marks or "MEASURE_END" not in marks:
        return {"error": (err or "no result")[-300:] + ("" if alive else " (server died)")}
    (t0, c0), (t1, c1) = marks["MEASURE_START"], marks["MEASURE_END"]
    cpu_s = (c1 - c0) / CLK_TCK
    rts = max(res["round_trips"], 1)
    return {
        "rtt_per_sec": res["rtt_per_sec"], "p50_us": res["p50_us"], "p99_us": res["p99_us"],
        "max_us": res["max_us"], "errors": res["errors"], "conns_opened": res.get("conns_opened", conns),
        "cpu_us_per_rt": cpu_s * 1e6 / rts, "cpu_cores": cpu_s / max(t1 - t0, 1e-9),
        "peak_rss_kib": hwm, "rss_start_kib": rss0,
    }


def idle_once(name: str, conns: int, hold: float, logdir: Path) -> dict:
    srv = Server(name, logdir)
    try:
        time.sleep(0.3)
        before = status_kib(srv.pid, "VmRSS")
        got = {}

        def on_line(line: str) -> None:
            if line == "READY":
                time.sleep(0.5)  # let the server settle after the last echo
                try:
                    got["with"] = status_kib(srv.pid, "VmRSS")
                except OSError:
                    pass

        res, err = run_loadgen(["--addr", f"127.0.0.1:{srv.port}", "--conns", str(conns), "--size", "64",
                                "--idle", str(hold)], limit=hold + 180, on_line=on_line)
    finally:
        srv.stop()
    if res is None or "with" not in got:
        return {"error": (err or "no result")[-300:]}
    n = max(res["idle_conns"], 1)
    return {"rss_before_kib": before, "rss_with_kib": got["with"], "idle_conns": res["idle_conns"],
            "errors": res["errors"], "kib_per_conn": (got["with"] - before) / n}


# --------------------------------------------------------------------------- micro

def micro_once(peer: str, sub: str, n: int, timeout: float) -> dict:
    rc, out = sh(micro_argv(peer) + [sub, str(n)], timeout=timeout)
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT"):
            return parse_kv(line)
    why = "timed out" if rc == 124 else f"exit status {rc}"
    last = [l for l in out.strip().splitlines() if l.strip()][-1:] or [""]
    return {"error": f"{why}: {last[0][:200]}"}


# --------------------------------------------------------------------------- stats

def med(xs):
    return statistics.median(xs) if xs else None


def spread_pct(xs):
    if len(xs) < 2:
        return None
    m = statistics.median(xs)
    return 100.0 * (max(xs) - min(xs)) / m if m else None


def fmt(x, nd=1, unit=""):
    if x is None:
        return "–"
    if isinstance(x, float) and abs(x) >= 1000:
        return f"{x:,.0f}{unit}"
    if isinstance(x, int):
        return f"{x:,}{unit}"
    return f"{x:.{nd}f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


# --------------------------------------------------------------------------- machine

def machine_info(go: str | None) -> dict:
    def first(cmd):
        rc, out = sh(cmd, timeout=30)
        return out.strip().splitlines()[0] if rc == 0 and out.strip() else "n/a"

    cpu = "n/a"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "n/a"
    try:
        kb = int(open("/proc/meminfo").readline().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass

    def lockver(lock: Path, crate: str) -> str:
        try:
            m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(crate), lock.read_text())
            return m.group(1) if m else "n/a"
        except OSError:
            return "n/a"

    def sysctl(path):
        try:
            return open(path).read().strip()
        except OSError:
            return "n/a"

    import resource
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": os.uname().release, "memory": mem,
        "rustc": first(["rustc", "--version"]), "go": first([go, "version"]) if go else "not installed",
        "tokio": lockver(PEERS / "Cargo.lock", "tokio"), "may": lockver(PEERS / "Cargo.lock", "may"),
        "gort_commit": first(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "max_map_count": sysctl("/proc/sys/vm/max_map_count"), "somaxconn": sysctl("/proc/sys/net/core/somaxconn"),
        "nofile_hard": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "loadavg_start": loadavg(),
    }


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------- targets

# Targets gort is measured against. These are the harness's proposal; edit them
# here. Each returns (status, detail): status in {"met", "NOT met", "n/a"}.
def targets(echo, idle, micro):
    out = []

    def echo_med(srv, key, cfg):
        return med([r[key] for r in echo.get((srv, *cfg), []) if "error" not in r])

    cfgs = sorted({(c, s) for (_, c, s) in echo})

    def t_idle():
        g = med([r["kib_per_conn"] for r in idle.get("gort", []) if "error" not in r])
        o = med([r["kib_per_conn"] for r in idle.get("go", []) if "error" not in r])
        if g is None or o is None:
            return "n/a", "needs gort and Go idle results"
        return ("met" if g <= o else "NOT met"), f"gort {g:.1f} KiB vs Go {o:.1f} KiB"

    def t_micro(sub, n_idx, factor):
        def f():
            key = f"{sub}#{n_idx}"
            g = med([r[MICRO_METRIC[sub][0]] for r in micro.get(("gort", key), []) if "error" not in r])
            o = med([r[MICRO_METRIC[sub][0]] for r in micro.get(("go", key), []) if "error" not in r])
            if g is None or o is None:
                return "n/a", "needs gort and Go results"
            return ("met" if g <= factor * o else "NOT met"), f"gort/Go = {g / o:.2f}×"
        return f

    def t_echo_vs(key, peer, factor, lower_better, cfg=(1000, 64)):
        g, o = echo_med("gort", key, cfg), echo_med(peer, key, cfg)
        if g is None or o is None:
            return "n/a", f"needs gort and {peer} echo results at c={cfg[0]}/{cfg[1]}B"
        r = g / o
        ok = r <= factor if lower_better else r >= factor
        return ("met" if ok else "NOT met"), f"gort/{peer} = {r:.2f}× (gort {g:,.1f}, {peer} {o:,.1f})"

    def t_parked_kib(limit):
        key = "parked#4"
        rs = [r for r in micro.get(("gort", key), []) if "error" not in r]
        errs = [r["error"] for r in micro.get(("gort", key), []) if "error" in r]
        if errs:
            return "NOT met", errs[0]
        g = med([r["kib_per_task"] for r in rs])
        if g is None:
            return "n/a", "no gort result"
        return ("met" if g <= limit else "NOT met"), f"gort {g:.2f} KiB per parked coroutine"

    # The targets of issues 2-5, on this machine, measured in the same run.
    out.append(("Echo 64 B, c=1000: server CPU per round trip ≤ 1.05× the raw epoll server's",
                *t_echo_vs("cpu_us_per_rt", "epoll", 1.05, True)))
    out.append(("Echo 64 B, c=1000: p99 latency ≤ tokio's", *t_echo_vs("p99_us", "tokio", 1.0, True)))
    out.append(("Echo 64 B, c=1000: round trips per second ≥ tokio's",
                *t_echo_vs("rtt_per_sec", "tokio", 1.0, False)))
    out.append(("Idle connections (5000): RSS per connection ≤ Go's", *t_idle()))
    out.append(("spawn+join, batches of 1000: ≤ 0.5× Go's ns/op", *t_micro("spawn_join_batch", 0, 0.5)()))
    out.append(("spawn+join, all at once: ≤ 0.5× Go's ns/op", *t_micro("spawn_join_all", 1, 0.5)()))
    out.append(("Unbuffered channel ping-pong: ≤ 0.5× Go's round trip", *t_micro("chan_pingpong", 2, 0.5)()))
    out.append(("1M parked coroutines on default sysctls: ≤ 4.5 KiB each", *t_parked_kib(4.5)))
    return out


# --------------------------------------------------------------------------- SVG

COLORS = {"gort": "#d62728", "tokio": "#1f77b4", "may": "#9467bd", "go": "#17becf", "epoll": "#7f7f7f"}


def svg_chart(echo, servers, path: Path, title_note: str, missing: list[str]) -> None:
    cfgs = sorted({(c, s) for (_, c, s) in echo})
    panels = [("Round trips per second (median, higher is better)", "rtt_per_sec", 1.0),
              ("Server CPU per round trip, µs (median, lower is better)", "cpu_us_per_rt", 1.0)]
    W, H = 1100, 470
    pw, ph = 500, 300
    ox = [60, 590]
    oy = 80
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
          f'font-family="sans-serif" font-size="12">',
          f'<rect width="{W}" height="{H}" fill="white"/>',
          f'<text x="{W / 2}" y="24" text-anchor="middle" font-size="17" font-weight="bold">'
          f'gort echo benchmark: closed-loop ping-pong on 127.0.0.1</text>',
          f'<text x="{W / 2}" y="44" text-anchor="middle" font-size="12" fill="#555">{esc(title_note)}</text>']
    for (ptitle, key, _), x0 in zip(panels, ox):
        vals = {}
        for srv in servers:
            for cfg in cfgs:
                rs = [r for r in echo.get((srv, *cfg), []) if "error" not in r]
                if rs:
                    xs = [r[key] for r in rs]
                    vals[(srv, cfg)] = (med(xs), min(xs), max(xs))
        vmax = max([v[2] for v in vals.values()] or [1.0]) * 1.1
        step = nice_step(vmax / 5)
        el.append(f'<text x="{x0 + pw / 2}" y="{oy - 12}" text-anchor="middle" font-weight="bold">{esc(ptitle)}</text>')
        # grid
        v = 0.0
        while v <= vmax:
            y = oy + ph - ph * v / vmax
            el.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#ddd"/>')
            el.append(f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end" fill="#444">{short(v)}</text>')
            v += step
        el.append(f'<line x1="{x0}" y1="{oy + ph}" x2="{x0 + pw}" y2="{oy + ph}" stroke="#000"/>')
        el.append(f'<line x1="{x0}" y1="{oy}" x2="{x0}" y2="{oy + ph}" stroke="#000"/>')
        if not cfgs:
            continue
        gw = pw / len(cfgs)
        bw = (gw * 0.8) / max(len(servers), 1)
        for gi, cfg in enumerate(cfgs):
            gx = x0 + gi * gw + gw * 0.1
            for si, srv in enumerate(servers):
                if (srv, cfg) not in vals:
                    continue
                m, lo, hi = vals[(srv, cfg)]
                bx = gx + si * bw
                y = oy + ph - ph * m / vmax
                el.append(f'<rect x="{bx:.1f}" y="{y:.1f}" width="{bw * 0.9:.1f}" height="{oy + ph - y:.1f}" '
                          f'fill="{COLORS.get(srv, "#333")}"><title>{srv} c={cfg[0]} {cfg[1]}B: {short(m)}</title></rect>')
                if hi > lo:
                    cx = bx + bw * 0.45
                    y1, y2 = oy + ph - ph * lo / vmax, oy + ph - ph * hi / vmax
                    el.append(f'<line x1="{cx:.1f}" y1="{y1:.1f}" x2="{cx:.1f}" y2="{y2:.1f}" stroke="#000"/>')
                    for yy in (y1, y2):
                        el.append(f'<line x1="{cx - 3:.1f}" y1="{yy:.1f}" x2="{cx + 3:.1f}" y2="{yy:.1f}" stroke="#000"/>')
            el.append(f'<text x="{x0 + gi * gw + gw / 2:.1f}" y="{oy + ph + 18}" text-anchor="middle">'
                      f'c={cfg[0]}, {cfg[1]} B</text>')
    # legend
    lx = W / 2 - 60 * len(servers)
    for i, srv in enumerate(servers):
        x = lx + i * 120
        el.append(f'<rect x="{x}" y="{H - 45}" width="14" height="14" fill="{COLORS.get(srv, "#333")}"/>')
        el.append(f'<text x="{x + 20}" y="{H - 34}">{esc(srv)}</text>')
    miss = f" Not run: {', '.join(missing)}." if missing else ""
    el.append(f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle" fill="#555">'
              f'Bars: median over repetitions; whiskers: min–max. c = concurrent connections.{esc(miss)}</text>')
    el.append("</svg>")
    path.write_text("\n".join(el) + "\n")


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_step(x: float) -> float:
    if x <= 0:
        return 1.0
    e = 10 ** int(f"{x:e}".split("e")[1])
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= x:
            return m * e
    return 10 * e


def short(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.1f}M"
    if v >= 1e3:
        return f"{v / 1e3:.0f}k"
    if v >= 10:
        return f"{v:.0f}"
    return f"{v:.1f}"


# --------------------------------------------------------------------------- report

def write_doc(path: Path, svg_name: str, args, info, cfg, echo, idle, micro, servers, micro_peers, started) -> None:
    L = []
    a = L.append
    a("# gort benchmarks\n")
    if args.quick:
        a("> **QUICK RUN (smoke test): short durations, reduced N, one repetition. These numbers are not "
          "results; run `python3 benches/run.py` for the real matrix.**\n")
    a(f"Generated by `python3 benches/run.py{' --quick' if args.quick else ''}` on "
      f"{started:%Y-%m-%d %H:%M} UTC (took {(time.monotonic() - T0) / 60:.1f} min), gort commit `{info['gort_commit']}`.\n")
    a("## Machine\n")
    a("| | |\n|---|---|")
    for k, lab in (("nproc", "CPUs (nproc)"), ("cpu", "CPU model"), ("kernel", "Kernel"), ("memory", "Memory"),
                   ("rustc", "rustc"), ("go", "Go"), ("tokio", "tokio"), ("may", "may"),
                   ("max_map_count", "vm.max_map_count"), ("somaxconn", "net.core.somaxconn"),
                   ("nofile_hard", "RLIMIT_NOFILE (hard)"), ("loadavg_start", "load average at start (1/5/15 min)"),
                   ("loadavg_end", "load average at end")):
        a(f"| {lab} | {info.get(k, 'n/a')} |")
    a("")
    try:
        busy = float(info["loadavg_start"].split()[0]) > 0.5 or float(info["loadavg_end"].split()[0]) > 2.5
    except (KeyError, ValueError, IndexError):
        busy = False
    if busy:
        a("> **Warning: the machine was busy with other work during this run (see load average); expect "
          "more noise than usual. Re-run on an idle machine for numbers to quote.**\n")
    a("## Method\n")
    a(f"- **Echo**: each server is started fresh for every measurement on a free port of 127.0.0.1, waited for "
      f"(bounded connect loop), then `benches/loadgen` (one client thread, raw epoll) runs a closed ping-pong "
      f"loop on C connections with M-byte pseudo-random messages (new bytes every round trip, every echoed "
      f"byte verified): {cfg['warmup']} s warm-up, then a {cfg['duration']} s measured window. "
      f"Configurations: c ∈ {{{', '.join(map(str, cfg['conns']))}}} × M ∈ {{{', '.join(map(str, cfg['sizes']))}}} B, "
      f"{cfg['reps']} repetition(s); repetitions are interleaved across servers (rep 1 of every server, then rep 2, ...) "
      f"so slow drift affects all servers alike. Tables give the **median** and the spread "
      f"((max − min) / median).")
    a("- **Server CPU per round trip** = (utime + stime of the server process from `/proc/PID/stat`, sampled when "
      "loadgen prints MEASURE_START and MEASURE_END) / round trips completed in the window. Resolution: one clock "
      f"tick ({1000 // CLK_TCK} ms). **Peak RSS** = VmHWM of the server at the end of the run.")
    a(f"- **Idle connections**: fresh server; RSS (VmRSS) sampled, then loadgen opens {cfg['idle_conns']} connections "
      f"and does one 64-byte echo on each (so per-connection state exists), then holds them for {cfg['idle_hold']} s; "
      f"RSS is sampled again 0.5 s after all are open. KiB per connection = (RSS with − RSS before) / connections. "
      f"RSS is user-space memory only: kernel socket buffers are not in it (so the epoll server's ~0 is its honest "
      f"user-space cost). Each server keeps a 4 KiB buffer per connection in its usual way: Go `make([]byte, 4096)`, "
      f"gort `gort::spawn_with_buffer(4096, ..)` (the buffer at the top of the coroutine's stack slot), and "
      f"`gort-array` the same server with a zeroed `[0u8; 4096]` in the handler's frame instead.")
    a("- **Micro**: each program is run once per benchmark and repetition as `PROG SUBCOMMAND N`; it prints one "
      f"`RESULT` line. {cfg['micro_reps']} repetition(s), median reported. A crash, a timeout or an `error=` in "
      "the RESULT line is reported as an error (e.g. ENOMEM when a runtime cannot map a million stacks).")
    a("- The load generator shares the machine with the server: with few cores the client is often the "
      "throughput bottleneck, so **round trips/s compare badly across servers; CPU per round trip is the "
      "better efficiency measure**. Expect ±25 % run-to-run noise on 2 cores.")
    a("- Peers use their defaults (tokio: multi-thread runtime, default workers; may: workers = CPUs, default "
      "stack; Go: default GOMAXPROCS; epoll: one edge-triggered thread per CPU with SO_REUSEPORT). See "
      "`benches/README.md` for what each program does.\n")
    if SKIPPED:
        a("## Skipped\n")
        for s in SKIPPED:
            a("- " + s.splitlines()[0].rstrip(":"))
        a("")

    a("## Echo\n")
    a(f"![echo chart]({svg_name})\n")
    for c in cfg["conns"]:
        for s in cfg["sizes"]:
            a(f"### c = {c}, {s} B messages\n")
            a("| server | round trips/s | spread | p50 µs | p99 µs | CPU µs/rt | CPU spread | CPU cores used | "
              "peak RSS MiB | rt/s vs epoll | CPU/rt vs epoll | rt/s vs Go | CPU/rt vs Go | errors |")
            a("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")

            def m(srv, key):
                return med([r[key] for r in echo.get((srv, c, s), []) if "error" not in r])

            for srv in servers:
                rs = echo.get((srv, c, s), [])
                ok = [r for r in rs if "error" not in r]
                errs = [r["error"] for r in rs if "error" in r]
                if not ok:
                    a(f"| {srv} | – | | | | | | | | | | | | {esc(errs[0][:120]) if errs else 'no data'} |")
                    continue
                rt = [r["rtt_per_sec"] for r in ok]
                cp = [r["cpu_us_per_rt"] for r in ok]
                sp = spread_pct(rt)
                cs = spread_pct(cp)
                err_n = sum(r["errors"] for r in ok)
                a(f"| {srv} | {fmt(med(rt))} | {fmt(sp, 0, ' %') if sp is not None else '–'} | "
                  f"{fmt(m(srv, 'p50_us'))} | {fmt(m(srv, 'p99_us'))} | {fmt(med(cp), 2)} | "
                  f"{fmt(cs, 0, ' %') if cs is not None else '–'} | {fmt(m(srv, 'cpu_cores'), 2)} | "
                  f"{fmt(m(srv, 'peak_rss_kib') / 1024, 1)} | "
                  f"{ratio(med(rt), m('epoll', 'rtt_per_sec'))} | {ratio(med(cp), m('epoll', 'cpu_us_per_rt'))} | "
                  f"{ratio(med(rt), m('go', 'rtt_per_sec'))} | {ratio(med(cp), m('go', 'cpu_us_per_rt'))} | "
                  f"{err_n}{'; ' + esc(errs[0][:80]) if errs else ''} |")
            a("")

    a(f"### Idle connections ({cfg['idle_conns']} connections)\n")
    a("| server | RSS before MiB | RSS with conns MiB | KiB per connection | vs epoll | vs Go | errors |")
    a("|---|---:|---:|---:|---:|---:|---|")

    def im(srv, key):
        return med([r[key] for r in idle.get(srv, []) if "error" not in r])

    for srv in servers + (["gort-array"] if "gort-array" in idle else []):
        rs = idle.get(srv, [])
        ok = [r for r in rs if "error" not in r]
        if not ok:
            e = next((r["error"] for r in rs if "error" in r), "no data")
            a(f"| {srv} | – | – | – | – | – | {esc(e[:120])} |")
            continue
        a(f"| {srv} | {im(srv, 'rss_before_kib') / 1024:.1f} | {im(srv, 'rss_with_kib') / 1024:.1f} | "
          f"{im(srv, 'kib_per_conn'):.2f} | {ratio(im(srv, 'kib_per_conn'), im('epoll', 'kib_per_conn'))} | "
          f"{ratio(im(srv, 'kib_per_conn'), im('go', 'kib_per_conn'))} | {sum(r['errors'] for r in ok)} |")
    a("")

    a("## Micro benchmarks\n")
    a("Median over repetitions; spread in parentheses when there is more than one. Ratio columns: gort / Go and "
      "gort / tokio (for msgs/s higher is better, for everything else lower is better).\n")
    notes: list[str] = []

    def note(peer, sub, n, msg):
        notes.append(f"{peer} {sub} {n:,}: {msg}")
        return f"error [{len(notes)}]"

    a("| benchmark | N | unit | " + " | ".join(micro_peers) + " | gort / Go | gort / tokio |")
    a("|---|---:|---|" + "---:|" * len(micro_peers) + "---:|---:|")
    for i, (sub, nf, nq) in enumerate(MICRO):
        key, unit, _ = MICRO_METRIC[sub]
        n = nq if args.quick else nf
        cells, meds = [], {}
        for p in micro_peers:
            rs = micro.get((p, f"{sub}#{i}"), [])
            ok = [r[key] for r in rs if "error" not in r and key in r]
            errs = [r.get("error", "no metric") for r in rs if "error" in r or key not in r]
            if ok:
                meds[p] = med(ok)
                sp = spread_pct(ok)
                cell = fmt(float(meds[p]), 1 if key != "kib_per_task" else 3)
                if sp is not None:
                    cell += f" (±{sp / 2:.0f} %)"
                if errs:
                    cell += f" ({len(errs)} failed: {note(p, sub, n, errs[0])})"
                cells.append(cell)
            elif errs:
                cells.append(note(p, sub, n, errs[0]))
            else:
                cells.append("–")
        a(f"| {sub} | {n:,} | {unit} | " + " | ".join(cells) +
          f" | {ratio(meds.get('gort'), meds.get('go'))} | {ratio(meds.get('gort'), meds.get('tokio'))} |")
    a("")
    if notes:
        a("Errors:\n")
        for k, msg in enumerate(notes, 1):
            a(f"{k}. {esc(msg)}")
        a("")
        if any("alloc" in m or "ENOMEM" in m or "Cannot allocate memory" in m for m in notes):
            a(f"ENOMEM from stack allocation is usually `vm.max_map_count` ({info['max_map_count']} here), not "
              "memory: a runtime that mmaps every coroutine stack with a guard page uses two mappings per "
              "coroutine, so it cannot hold more than about max_map_count / 2 live coroutines.\n")
    a("Timer RSS (peak RSS growth during `timers`, KiB): " + ", ".join(
        f"{p} {fmt(med([r['rss_delta_kib'] for r in micro.get((p, 'timers#5'), []) if 'rss_delta_kib' in r]), 0)}"
        for p in micro_peers) + ".\n")
    a("Channels used: Go unbuffered channels (ping-pong) and `chan(1024)` (fan-in); tokio `mpsc::channel(1)` ×2 "
      "(ping-pong) and `mpsc::channel(1024)` (fan-in); may has only unbounded channels (`may::sync::mpsc`). "
      "Mutex: Go `sync.Mutex`, tokio `tokio::sync::Mutex`, may `may::sync::Mutex`.\n")

    extra = info.get("gort_extra", {})
    if extra:
        a("## gort-only measurements\n")
        a("No peer runs these in this harness; the targets are issue 2's.\n")
        a("| measurement | median | runs | target |\n|---|---|---|---|")
        ys = [r["ns_per_op"] for r in extra.get("yield_pingpong", []) if "ns_per_op" in r]
        a(f"| yield round trip, two coroutines on one worker (`bench_micro yield_pingpong`) | "
          f"{fmt(med(ys), 1)} ns | {', '.join(fmt(y, 1) for y in ys)} | ≤ 50 ns |")
        cs = [r["cpu_percent"] for r in extra.get("idle_cpu", []) if "cpu_percent" in r]
        a(f"| idle runtime CPU (`bench_micro idle_cpu`) | {fmt(med(cs), 3)} % of a core | "
          f"{', '.join(fmt(c, 3) for c in cs)} | ≈ 0 |")
        a("")

    notes = ROOT / "docs" / "benchmarks-analysis.md"
    if notes.exists():
        a("## Analysis\n")
        a(f"Hand-written, kept in `{notes.relative_to(ROOT)}` and included on every run; the numbers it "
          "quotes come from the run it was written after, the tables above from this run.\n")
        a(notes.read_text().strip() + "\n")

    a("## Targets\n")
    a("The targets of issues 2–5 (see `targets()` in `benches/run.py`), judged on the medians of this run. "
      "*n/a* means a needed row is missing.\n")
    a("| target | status | detail |\n|---|---|---|")
    for name, status, detail in targets(echo, idle, micro):
        st = {"met": "✅ met", "NOT met": "❌ not met"}.get(status, "n/a")
        a(f"| {name} | {st} | {esc(detail)} |")
    a("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L) + "\n")


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke test: short runs, reduced N, 1 repetition")
    ap.add_argument("--reps", type=int, help="echo repetitions (default 3, quick 1)")
    ap.add_argument("--duration", type=float, help="measured seconds per echo run (default 5, quick 1)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per echo run (default 1, quick 0.5)")
    ap.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    ap.add_argument("--skip-echo", action="store_true")
    ap.add_argument("--skip-micro", action="store_true")
    ap.add_argument("--no-install-go", action="store_true", help="do not apt-get install golang when go is missing")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--svg", default=str(ROOT / "docs" / "bench-echo.svg"))
    args = ap.parse_args()

    q = args.quick
    cfg = {
        "reps": args.reps or (1 if q else 3),
        "duration": args.duration or (1.0 if q else 5.0),
        "warmup": args.warmup or (0.5 if q else 1.0),
        "conns": [50, 1000],
        "sizes": [64, 4096],
        "idle_conns": 5000,
        "idle_hold": 1.0 if q else 2.0,
        "micro_reps": 1 if q else 3,
    }
    started = dt.datetime.now(dt.timezone.utc)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    logdir = RESULTS / f"logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)

    avail = build(args)
    info = machine_info(avail.get("go_path"))
    if float(info["loadavg_start"].split()[0] if info["loadavg_start"] != "n/a" else 0) > 0.5:
        log(f"WARNING: load average is {info['loadavg_start']}: other work is running, results will be noisy")
    log(f"machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}; {info['rustc']}; {info['go']}")
    wanted = [s.strip() for s in args.servers.split(",") if s.strip()]
    servers = [s for s in SERVERS if s in wanted and avail.get(s)]
    micro_peers = [p for p in MICRO_PEERS if p in wanted and avail.get("gort_micro" if p == "gort" else p)]
    log(f"echo servers: {', '.join(servers)}; micro peers: {', '.join(micro_peers)}")

    echo: dict = {}
    idle: dict = {}
    micro: dict = {}
    if not args.skip_echo:
        combos = [(c, s) for c in cfg["conns"] for s in cfg["sizes"]]
        total = cfg["reps"] * len(combos) * len(servers)
        i = 0
        for rep in range(cfg["reps"]):
            for c, s in combos:
                for srv in servers:
                    i += 1
                    try:
                        r = echo_once(srv, c, s, cfg["warmup"], cfg["duration"], logdir)
                    except Exception as e:  # one broken run must not end the matrix
                        r = {"error": f"{type(e).__name__}: {e}"}
                    echo.setdefault((srv, c, s), []).append(r)
                    if "error" in r:
                        log(f"echo {i}/{total} rep {rep + 1} {srv:5s} c={c:<4d} {s:>4d} B: ERROR {r['error'][:200]}")
                    else:
                        log(f"echo {i}/{total} rep {rep + 1} {srv:5s} c={c:<4d} {s:>4d} B: {r['rtt_per_sec']:>9,.0f} rt/s  "
                            f"p99 {r['p99_us']:>8.0f} µs  cpu {r['cpu_us_per_rt']:6.2f} µs/rt  "
                            f"rss {r['peak_rss_kib'] / 1024:6.1f} MiB  errors {r['errors']}")
        for srv in servers + (["gort-array"] if "gort" in servers else []):
            try:
                r = idle_once(srv, cfg["idle_conns"], cfg["idle_hold"], logdir)
            except Exception as e:
                r = {"error": f"{type(e).__name__}: {e}"}
            idle.setdefault(srv, []).append(r)
            if "error" in r:
                log(f"idle {srv}: ERROR {r['error'][:200]}")
            else:
                log(f"idle {srv}: {r['idle_conns']} conns, {r['kib_per_conn']:.2f} KiB/conn "
                    f"({r['rss_before_kib'] / 1024:.1f} -> {r['rss_with_kib'] / 1024:.1f} MiB), errors {r['errors']}")
    if not args.skip_micro:
        for rep in range(cfg["micro_reps"]):
            for i, (sub, nf, nq) in enumerate(MICRO):
                n = nq if q else nf
                for p in micro_peers:
                    r = micro_once(p, sub, n, timeout=180)
                    micro.setdefault((p, f"{sub}#{i}"), []).append(r)
                    key, unit, _ = MICRO_METRIC[sub]
                    shown = f"{r[key]} {unit}" if key in r else f"ERROR {r.get('error', 'no ' + key)}"
                    log(f"micro rep {rep + 1} {p:5s} {sub} {n}: {shown}")

    # gort-only measurements (issue 2): yield round trip and idle CPU have no peer equivalent here.
    if not args.skip_micro and "gort" in micro_peers:
        extra = {}
        for rep in range(cfg["micro_reps"]):
            r = micro_once("gort", "yield_pingpong", 1_000_000 if q else 10_000_000, timeout=120)
            extra.setdefault("yield_pingpong", []).append(r)
            log(f"gort-only rep {rep + 1} yield_pingpong: {r.get('ns_per_op', r.get('error'))} ns/round trip")
        r = micro_once("gort", "idle_cpu", 2 if q else 5, timeout=60)
        extra.setdefault("idle_cpu", []).append(r)
        log(f"gort-only idle_cpu: {r.get('cpu_percent', r.get('error'))} % of one core")
        info["gort_extra"] = extra

    info["loadavg_end"] = loadavg()
    raw = {"config": cfg, "machine": info, "skipped": SKIPPED, "quick": q,
           "echo": [{"server": k[0], "conns": k[1], "size": k[2], "runs": v} for k, v in echo.items()],
           "idle": [{"server": k, "runs": v} for k, v in idle.items()],
           "micro": [{"peer": k[0], "bench": k[1], "runs": v} for k, v in micro.items()]}
    raw_path = RESULTS / f"results-{stamp}{'-quick' if q else ''}.json"
    raw_path.write_text(json.dumps(raw, indent=1))
    svg_path, doc_path = Path(args.svg), Path(args.doc)
    svg_path.parent.mkdir(parents=True, exist_ok=True)
    note = (f"{info['nproc']} CPUs ({info['cpu']}), kernel {info['kernel']}; loadgen on the same machine; "
            f"{cfg['reps']} rep(s) × {cfg['duration']} s" + ("; QUICK RUN, not results" if q else ""))
    svg_chart(echo, servers, svg_path, note, [x for x in SERVERS if x in wanted and x not in servers])
    rel = os.path.relpath(svg_path, doc_path.parent)
    write_doc(doc_path, rel, args, info, cfg, echo, idle, micro, servers, micro_peers, started)
    log(f"wrote {doc_path}, {svg_path} and {raw_path}")
    if SKIPPED:
        log("skipped: " + "; ".join(s.splitlines()[0].rstrip(":") for s in SKIPPED))


if __name__ == "__main__":
    main()
