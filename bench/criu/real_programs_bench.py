#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The CRIU benchmark on real programs: redis (TCP, 200 000 keys) and a
4-thread memcached go through the criu-real-programs test's chain
(`pre-dump --ooh` x3 with keys rewritten between rounds, `dump --ooh`,
restore, data verified) and, beside it, a plain full dump of a fresh
identical instance; --reps times each, alternating. Prints every dump's
frozen time and pages, then per program the medians and the ratio of the
--ooh final dump's frozen time to the plain dump's (issue 14's target:
<= 1.0). CRIU logs at -v2 here: the test's -v4 logs every page run and
costs the fragmented --ooh dumps more than the plain ones. Needs root,
redis-server and memcached; writes CSV.

usage: real_programs_bench.py BUILD_DIR [--reps N] [--csv FILE]
"""
import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TEST = os.path.join(HERE, "..", "..", "tests", "criu", "real_programs_test.py")


def load_test_module():
    spec = importlib.util.spec_from_file_location("real_programs_test", TEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build", help="the Meson build directory (patched criu, plugin, oohd)")
    ap.add_argument("--reps", type=int, default=3, help="chains and plain dumps per program")
    ap.add_argument("--csv", default=None, help="default: BUILD/bench-criu-real.csv")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    criu = os.path.join(build, "criu-plugin", "criu")
    plugdir = os.path.join(build, "criu-plugin")
    oohd = os.path.join(build, "oohd", "oohd")
    for f in (criu, os.path.join(plugdir, "ooh_plugin.so"), oohd):
        if not os.path.exists(f):
            sys.exit("real_programs_bench: %s is missing: build first" % f)
    if os.getuid() != 0:
        sys.exit("real_programs_bench: needs root")
    for prog in ("redis-server", "memcached"):
        if not shutil.which(prog):
            sys.exit("real_programs_bench: %s is not installed" % prog)
    csv = a.csv or os.path.join(build, "bench-criu-real.csv")
    t = load_test_module()

    work = tempfile.mkdtemp(prefix="ooh-criu-real-bench.", dir="/dev/shm")
    sock = os.path.join(work, "oohd.sock")
    os.environ["OOH_SOCKET"] = sock
    daemon = subprocess.Popen([oohd, "--socket", sock, "--foreground"],
                              stdout=open(os.path.join(work, "oohd.log"), "w"),
                              stderr=subprocess.STDOUT)
    rows = []
    try:
        t.wait_for(lambda: os.path.exists(sock), "oohd's socket")
        cr = t.Criu(criu, plugdir, work, verbosity="-v2")
        load = open("/proc/loadavg").read().split()[0]
        print("real programs: %d reps, %d CPUs, load %s at the start, images in /dev/shm"
              % (a.reps, os.cpu_count(), load))
        for rep in range(a.reps):
            for cls in (t.Redis, t.Memcached):
                base = os.path.join(work, "%s-%d" % (cls.name, rep))
                c = t.chain(cls(base, 1 + rep), cr, base + "-img")
                p = t.plain(cls(base + "-plain", 1 + rep), cr, base + "-plain-img")
                rows.append((cls.name, rep, c["dump"], p))
                shutil.rmtree(base + "-img", ignore_errors=True)
                shutil.rmtree(base + "-plain-img", ignore_errors=True)
    except t.Failure as e:
        sys.exit("real_programs_bench: %s" % e)
    finally:
        for proc in t.procs:
            proc.kill()
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(work, ignore_errors=True)

    with open(csv, "w") as f:
        f.write("program,rep,ooh_frozen_ms,ooh_pages,ooh_pages_parent,plain_frozen_ms,plain_pages\n")
        for name, rep, c, p in rows:
            f.write("%s,%d,%.2f,%d,%d,%.2f,%d\n" % (
                name, rep, c["frozen_us"] / 1000, c["pages_written"], c["pages_parent"],
                p["frozen_us"] / 1000, p["pages_written"]))
    print()
    print("%-10s | %14s | %12s | %16s | %15s | %s" % (
        "program", "--ooh frozen ms", "--ooh pages", "plain frozen ms", "plain pages",
        "ratio (target <= 1.0)"))
    for name in ("redis", "memcached"):
        mine = [r for r in rows if r[0] == name]
        of = statistics.median(r[2]["frozen_us"] / 1000 for r in mine)
        pf = statistics.median(r[3]["frozen_us"] / 1000 for r in mine)
        op = statistics.median(r[2]["pages_written"] for r in mine)
        pp = statistics.median(r[3]["pages_written"] for r in mine)
        print("%-10s | %14.1f | %12d | %16.1f | %15d | %.2f" % (name, of, op, pf, pp, of / pf))
    print("(medians of %d; CSV: %s)" % (a.reps, csv))


if __name__ == "__main__":
    main()
