#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# ooh-bench-tracked: real programs' throughput untracked vs tracked by oohd.
"""Tracked overhead on realistic work (issue 14, item 4).

Runs redis-server under redis-benchmark and memcached under memaslap
(memcaslap, libmemcached-tools), each once untracked and once tracked by a
private oohd that this script starts, with a collect every --interval
seconds during the tracked run; prints ops/s and latency side by side and
the slowdown, and the cost of one tracked first write of a page measured
here by ooh-bench-collect's write loop. Writes CSV.

Needs root (oohd registers write protection on other processes).
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def die(msg):
    print(f"ooh-bench-tracked: {msg}", file=sys.stderr)
    sys.exit(1)


def wait_port(port, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            die(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            time.sleep(0.02)
    die(f"{what} not listening on 127.0.0.1:{port} after 6 s")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Collector:
    """Tracks a pid through oohctl and collects every `interval` seconds."""

    def __init__(self, oohctl, sock, pid, interval):
        self.cmd = [oohctl, "--socket", sock]
        self.pid = str(pid)
        self.interval = interval
        self.pages = []
        self.collect_ms = []
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def run(self, *args):
        return subprocess.run(self.cmd + list(args), capture_output=True, text=True)

    def start(self):
        r = self.run("track", self.pid)
        if r.returncode != 0:
            die(f"oohctl track {self.pid}: {r.stderr.strip()}")
        self.thread.start()

    def collect(self):
        t0 = time.monotonic()
        r = self.run("collect", self.pid, "--json")
        self.collect_ms.append((time.monotonic() - t0) * 1e3)
        if r.returncode != 0:
            self.error = r.stderr.strip()
            return
        doc = json.loads(r.stdout)
        ps = doc.get("page_size", 4096)
        self.pages.append(sum((e - s) // ps for s, e in doc["ranges"]))

    def loop(self):
        while not self.done.wait(self.interval):
            self.collect()

    def stop(self):
        self.done.set()
        self.thread.join()
        self.run("untrack", self.pid)
        if self.error:
            die(f"oohctl collect {self.pid}: {self.error}")


def redis_run(args, port, oohctl, sock, tracked):
    """One redis-server, warmed up, then measured; returns {test: row}."""
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
         "--bind", "127.0.0.1", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server, "redis-server")
        bench = ["redis-benchmark", "-p", str(port), "-r", str(args.keys), "-d",
                 str(args.value_size), "-c", "50", "--csv"]
        # Populate the keyspace first: the measured run then rewrites pages
        # that already exist, the case write protection makes costly.
        subprocess.run(bench + ["-t", "set,lpush", "-n", str(args.keys)],
                       stdout=subprocess.DEVNULL, check=True)
        col = Collector(oohctl, sock, server.pid, args.interval) if tracked else None
        if col:
            col.start()
        out = subprocess.run(bench + ["-t", "set,get,lpush", "-n", str(args.requests)],
                             capture_output=True, text=True, check=True).stdout
        if col:
            col.stop()
    finally:
        stop(server)
    rows = {}
    for line in out.splitlines()[1:]:
        f = [x.strip('"') for x in line.split(",")]
        if len(f) >= 7:
            rows[f[0]] = {"ops": float(f[1]), "avg": float(f[2]), "p50": float(f[4]),
                          "p99": float(f[6])}
    return rows, col


def memcached_run(args, port, oohctl, sock, tracked, cfg):
    server = subprocess.Popen(
        ["memcached", "-u", "root", "-l", "127.0.0.1", "-p", str(port), "-U", "0",
         "-m", "1024", "-t", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server, "memcached")
        col = Collector(oohctl, sock, server.pid, args.interval) if tracked else None
        if col:
            col.start()
        out = subprocess.run(
            ["memcaslap", "-s", f"127.0.0.1:{port}", "-t", f"{args.seconds}s", "-T", "2",
             "-c", "16", "-F", cfg],
            capture_output=True, text=True, check=True).stdout
        if col:
            col.stop()
    finally:
        stop(server)
    m = re.search(r"Ops:\s*(\d+)\s+TPS:\s*(\d+)", out)
    if not m:
        die(f"cannot parse memcaslap output:\n{out}")
    return {"set/get 50/50": {"ops": float(m.group(2)), "avg": None, "p50": None,
                              "p99": None}}, col


def first_write_ns(bench_collect, oohd):
    """ooh-bench-collect's write loop: ns per tracked first write of a page."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as csv:
        r = subprocess.run([bench_collect, "--oohd", oohd, "--write-loop-only", "--csv",
                            csv.name], capture_output=True, text=True)
    m = re.search(r"untracked ([\d.]+) ms, tracked ([\d.]+) ms: x([\d.]+); (-?\d+) ns", r.stdout)
    if r.returncode != 0 or not m:
        die(f"{bench_collect} --write-loop-only failed:\n{r.stdout}{r.stderr}")
    return float(m.group(4)), float(m.group(1)), float(m.group(2))


PHOENIX_APPS = ("histogram", "kmeans", "pca", "string-match", "word-count")


def phoenix_run(binary, libs, oohctl, sock, tracked, interval):
    """One Phoenix-like application (bench/gc/phoenix, bdwgc non-incremental:
    oohd is then the only tracker), tracked from its start with a collect
    every `interval` s; returns ({"run": row}, collector). The app times its
    own work (its first output field, seconds): process start is left out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GC_")}
    if libs:
        env["LD_LIBRARY_PATH"] = libs
    app = subprocess.Popen([binary, "--run", "full"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
    col = None
    if tracked:
        col = Collector(oohctl, sock, app.pid, interval)
        col.start()
    out, err = app.communicate(timeout=300)
    if col:
        col.done.set()
        col.thread.join()
        if col.error and app.returncode == 0 and "exited" not in col.error and \
                "No such process" not in col.error:
            die(f"oohctl collect {app.pid}: {col.error}")
    if app.returncode != 0:
        die(f"{binary} --run full exited {app.returncode}: {err.strip()}")
    seconds = float(out.split()[0])
    # ops: applications per second, so that "slowdown" reads as for servers.
    return {"run": {"ops": 1.0 / seconds, "avg": None, "p50": None, "p99": None}}, col


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def main():
    ap = argparse.ArgumentParser(
        prog="ooh-bench-tracked",
        description="Throughput and latency of redis-server (redis-benchmark) and memcached "
        "(memcaslap) untracked vs tracked by a private oohd that collects every --interval "
        "seconds, plus the cost of a tracked first write. Needs root: oohd write-protects "
        "other processes' memory.")
    ap.add_argument("--oohd", required=True)
    ap.add_argument("--oohctl", required=True)
    ap.add_argument("--bench-collect", required=True, help="ooh-bench-collect, for the "
                    "first-write cost")
    ap.add_argument("--csv", default="bench-tracked.csv")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between collects")
    ap.add_argument("--reps", type=int, default=3, help="runs per mode (median reported)")
    ap.add_argument("--requests", type=int, default=300000, help="redis-benchmark -n")
    ap.add_argument("--keys", type=int, default=200000, help="redis-benchmark -r")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--seconds", type=int, default=8, help="memcaslap run time")
    ap.add_argument("--phoenix-dir", help="where the ooh-phoenix-* applications are "
                    "(BUILD/bench/gc/phoenix); each is run untracked and tracked")
    ap.add_argument("--phoenix-libs", default="",
                    help="LD_LIBRARY_PATH for them: the patched libgc (BUILD/gc) and libooh")
    ap.add_argument("--phoenix-interval", type=float, default=0.1,
                    help="seconds between collects of a Phoenix application (they run for "
                    "about half a second each)")
    ap.add_argument("--programs", default="redis,memcached,phoenix",
                    help="which of redis, memcached, phoenix to run (comma-separated)")
    args = ap.parse_args()
    chosen = set(args.programs.split(","))
    if os.geteuid() != 0:
        die("needs root (oohd write-protects other processes' memory)")
    for tool in ("redis-server", "redis-benchmark", "memcached", "memcaslap"):
        if not chosen & {"redis", "memcached"}:
            break
        if not shutil.which(tool):
            die(f"{tool} not found: apt-get install redis-server redis-tools memcached "
                "libmemcached-tools")

    ns, loop_untracked, loop_tracked = first_write_ns(args.bench_collect, args.oohd)

    tmp = tempfile.mkdtemp(prefix="ooh-bench-tracked-")
    sock = os.path.join(tmp, "oohd.sock")
    cfg = os.path.join(tmp, "memaslap.cfg")
    with open(cfg, "w") as f:
        # keys 64 B, values args.value_size B, half sets (cmd 0) half gets (cmd 1)
        f.write(f"key\n64 64 1\nvalue\n{args.value_size} {args.value_size} 1\n"
                "cmd\n0 0.5\n1 0.5\n")
    daemon = subprocess.Popen([args.oohd, "--foreground", "--socket", sock, "--log-level",
                               "warning"])
    for _ in range(300):
        if os.path.exists(sock):
            break
        time.sleep(0.01)
    else:
        die(f"{args.oohd} did not create {sock}")

    results = {}  # (program, test) -> {"untracked": [rows], "tracked": [...], "pages": [...]}
    try:
        for rep in range(args.reps):
            for tracked in (False, True):  # alternate, so drift hits both alike
                programs = [
                    ("redis", lambda t: redis_run(args, 16379 + rep, args.oohctl, sock, t)),
                    ("memcached", lambda t: memcached_run(args, 11311 + rep, args.oohctl, sock,
                                                          t, cfg))]
                for name in (PHOENIX_APPS if args.phoenix_dir else ()):
                    binary = os.path.join(args.phoenix_dir, "ooh-phoenix-" + name)
                    programs.append(("phoenix " + name, lambda t, b=binary: phoenix_run(
                        b, args.phoenix_libs, args.oohctl, sock, t, args.phoenix_interval)))
                for prog, fn in programs:
                    if prog.split()[0] not in chosen:
                        continue
                    rows, col = fn(tracked)
                    for test, row in rows.items():
                        r = results.setdefault((prog, test), {"untracked": [], "tracked": [],
                                                              "pages": [], "cms": []})
                        r["tracked" if tracked else "untracked"].append(row)
                        if col:
                            r["pages"] += col.pages
                            r["cms"] += col.collect_ms
                    print(f"  rep {rep + 1}/{args.reps} {prog} "
                          f"{'tracked' if tracked else 'untracked'} done", file=sys.stderr)
    finally:
        stop(daemon)
        shutil.rmtree(tmp, ignore_errors=True)

    def med(rows, key):
        vals = [r[key] for r in rows if r[key] is not None]
        return statistics.median(vals) if vals else None

    hdr = ("program,test,untracked_ops_s,tracked_ops_s,slowdown,untracked_p50_ms,"
           "tracked_p50_ms,untracked_p99_ms,tracked_p99_ms,collects,dirty_pages_per_collect,"
           "collect_ms,untracked_spread_pct")
    lines = [hdr]
    print(f"\nthroughput untracked vs tracked (collect every {args.interval:g} s; Phoenix "
          f"applications: every {args.phoenix_interval:g} s, ops/s = 1 / the run's seconds), "
          f"median of "
          f"{args.reps}; slowdown = untracked ops/s / tracked ops/s; collects, pages/coll "
          f"(mean dirty pages per collect) and coll ms (median wall time of `oohctl collect`, "
          f"process start included) over the tracked runs; noise = (max - min) / median of "
          f"the untracked runs' ops/s")
    print(f"{'program':10} {'test':14} {'untracked':>11} {'tracked':>11} {'slowdown':>8} | "
          f"{'p50 u/t ms':>13} {'p99 u/t ms':>15} | {'collects':>8} {'pages/coll':>10} "
          f"{'coll ms':>7} {'noise':>6}")
    for (prog, test), r in results.items():
        uo, to = med(r["untracked"], "ops"), med(r["tracked"], "ops")
        u50, t50 = med(r["untracked"], "p50"), med(r["tracked"], "p50")
        u99, t99 = med(r["untracked"], "p99"), med(r["tracked"], "p99")
        pages = statistics.mean(r["pages"]) if r["pages"] else 0
        cms = statistics.median(r["cms"]) if r["cms"] else 0
        n = len(r["pages"])
        # Run-to-run spread of the untracked runs: a slowdown inside it is noise.
        uvals = [x["ops"] for x in r["untracked"]]
        spread = (max(uvals) - min(uvals)) / uo * 100
        # Phoenix rows: applications per second (1 / its own time in s).
        spec = "11.3f" if uo < 100 else "11.0f"
        print(f"{prog:10} {test:14} {uo:{spec}} {to:{spec}} {uo / to:7.2f}x | "
              f"{fmt(u50, '6.3f'):>6}/{fmt(t50, '6.3f'):>6} {fmt(u99, '7.3f'):>7}/"
              f"{fmt(t99, '7.3f'):>7} | {n:8d} {pages:10.0f} {cms:7.1f} {spread:5.0f}%")
        lines.append(",".join(str(x) for x in (
            prog, test, f"{uo:.4g}", f"{to:.4g}", f"{uo / to:.3f}", fmt(u50, ".3f"),
            fmt(t50, ".3f"), fmt(u99, ".3f"), fmt(t99, ".3f"), n, f"{pages:.0f}", f"{cms:.2f}",
            f"{spread:.1f}")))
    print(f"\ntracked first write (ooh-bench-collect write loop, 256 MiB x 5 passes): "
          f"{ns:.0f} ns per page per epoch (loop {loop_untracked:.0f} ms untracked, "
          f"{loop_tracked:.0f} ms tracked)")
    lines.append(f"# first_write_ns={ns:.0f} write_loop_untracked_ms={loop_untracked:.1f} "
                 f"write_loop_tracked_ms={loop_tracked:.1f}")
    with open(args.csv, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"CSV written to {args.csv}")


if __name__ == "__main__":
    main()
