#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# The ooh option over CRIU's RPC (criu swrk, images/rpc.proto): a pre-dump and
# a dump on top of it with opts.ooh set go through ooh_plugin.so and oohd; the
# same pre-dump without it is refused on a kernel without soft-dirty. The
# mem_track feature check runc sends before a pre-dump (without options)
# says yes while the plugin can track (oohd answers), no without oohd.
#
# usage: rpc_test.py CRIU_SOURCE_DIR_FILE CRIU PLUGIN_SO OOHD
# Exit 77 (skip) without root or without the pieces.
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def fail(why):
    print("FAIL: " + why)
    sys.exit(1)


# Each CRIU request has a deadline far below Meson's 300 s: a hung criu swrk
# (e.g. compel waiting for a breakpoint trap that never comes) is killed and
# the test fails with the last lines it logged.
DEADLINE = 60


class Hung(Exception):
    pass


hung = []


def on_alarm(signum, frame):
    # Killed here: pycriu turns the exception into one of its own.
    hung.append(True)
    kill_criu()
    raise Hung()


def descendants(pid):
    """Every process below pid (/proc/PID/task/TID/children)."""
    found, unvisited = [], [pid]
    while unvisited:
        p = unvisited.pop()
        try:
            tids = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/children" % (p, tid)) as f:
                    kids = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += kids
            unvisited += kids
    return found


def kill_criu():
    """Kills the criu processes this test started (swrk), and their children."""
    for p in descendants(os.getpid()):
        try:
            with open("/proc/%d/comm" % p) as f:
                if f.read().strip() != "criu":
                    continue
            for q in [p] + descendants(p):
                os.kill(q, signal.SIGKILL)
        except OSError:
            pass


def main():
    if len(sys.argv) != 5 or not all(sys.argv[1:]):
        skip("missing build outputs (patched CRIU not built: see the CRIU part of meson's summary)")
    srcfile, criu, plugin, oohd = sys.argv[1:]
    if os.getuid() != 0:
        skip("needs root (CRIU dumps processes)")
    for f in (srcfile, criu, plugin, oohd):
        if not os.path.exists(f):
            skip("missing build output " + f)
    tree = open(srcfile).read().strip()
    try:
        import google.protobuf  # noqa: F401
    except ImportError:
        skip("python3-protobuf is needed for CRIU's RPC client (pycriu)")

    # pycriu's rpc_pb2 comes from the patched rpc.proto: build it once.
    with open(os.path.join(tree, ".ooh-zdtm.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(tree, "lib/pycriu/rpc_pb2.py")):
            env = dict(os.environ, PATH="/usr/bin:" + os.environ["PATH"])
            r = subprocess.run(["nice", "-n", "10", "make", "-j2", "lib"], cwd=tree, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode:
                fail("make lib in %s failed:\n%s" % (tree, r.stdout.decode()[-2000:]))
    sys.path.insert(0, os.path.join(tree, "lib"))
    import pycriu

    work = tempfile.mkdtemp(prefix="ooh-criu-rpc.")
    sock = os.path.join(work, "oohd.sock")
    os.environ["OOH_SOCKET"] = sock
    # swrk inherits the environment: the plugin directory comes from it.
    os.environ["CRIU_LIBS_DIR"] = os.path.dirname(os.path.abspath(plugin))
    daemon = subprocess.Popen([oohd, "--socket", sock, "--foreground"],
                              stdout=open(os.path.join(work, "oohd.log"), "w"),
                              stderr=subprocess.STDOUT)
    target = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)

        def request(kind, name, ooh, parent=None):
            d = os.path.join(work, name)
            os.mkdir(d)
            c = pycriu.criu()
            c.use_binary(os.path.abspath(criu))
            fd = os.open(d, os.O_DIRECTORY)
            c.opts.images_dir_fd = fd
            c.opts.pid = target.pid
            c.opts.log_file = kind + ".log"
            c.opts.log_level = 4
            if ooh is not None:
                c.opts.ooh = ooh
            if parent:
                c.opts.parent_img = parent
                c.opts.track_mem = True
            c.opts.leave_running = True
            signal.signal(signal.SIGALRM, on_alarm)
            signal.alarm(DEADLINE)
            try:
                getattr(c, kind.replace("-", "_"))()
                ok = True
            except (pycriu.CRIUException, Hung):
                ok = False
            finally:
                signal.alarm(0)
                os.close(fd)
            if hung:
                try:
                    with open(os.path.join(d, kind + ".log")) as f:
                        tail = f.read().splitlines()[-5:]
                except OSError as e:
                    tail = [str(e)]
                fail("RPC %s into %s: no answer within %d s, killed criu; the last lines of its "
                     "log:\n    %s" % (kind, name, DEADLINE, "\n    ".join(tail)))
            with open(os.path.join(d, kind + ".log")) as f:
                return ok, f.read()

        def feature_mem_track():
            """runc's question before a pre-dump: a FEATURE_CHECK of
            mem_track without options (patch 0009)."""
            c = pycriu.criu()
            c.use_binary(os.path.abspath(criu))
            req = pycriu.rpc.criu_req()
            req.type = pycriu.rpc.FEATURE_CHECK
            req.features.mem_track = True
            signal.signal(signal.SIGALRM, on_alarm)
            signal.alarm(DEADLINE)
            try:
                resp = c._send_req_and_recv_resp(req)
            except Hung:
                fail("RPC feature check: no answer within %d s, killed criu" % DEADLINE)
            finally:
                signal.alarm(0)
            if not resp.success:
                fail("RPC feature check failed: %s" % resp)
            return resp.features.mem_track

        if not feature_mem_track():
            fail("RPC feature check: mem_track false with ooh_plugin.so loadable and oohd "
                 "running (runc would refuse its pre-dumps)")
        os.environ["OOH_SOCKET"] = os.path.join(work, "no-oohd.sock")
        if feature_mem_track() and "Dirty track supported" not in subprocess.run(
                [criu, "check", "--feature", "mem_dirty_track", "-v4"],
                capture_output=True, text=True).stdout:
            fail("RPC feature check: mem_track true without oohd on a kernel without soft-dirty")
        os.environ["OOH_SOCKET"] = sock

        ok, log = request("pre-dump", "nosd", None)
        if ok and "Dirty track supported" not in log:
            fail("RPC pre-dump without ooh succeeded on a kernel without soft-dirty")
        if not ok and "--ooh" not in log:
            fail("RPC pre-dump without soft-dirty failed without naming --ooh")

        ok, log = request("pre-dump", "1", True)
        if not ok or "ooh: started tracking %d" % target.pid not in log:
            fail("RPC pre-dump with ooh failed or did not use the plugin:\n" + log[-3000:])
        ok, log = request("dump", "2", True, parent="../1")
        if not ok or "ooh: %d is tracked by oohd" % target.pid not in log:
            fail("RPC dump with ooh on top of the pre-dump failed:\n" + log[-3000:])
        print("PASS: opts.ooh over RPC: pre-dump and dump went through ooh_plugin.so; "
              "the mem_track feature check follows oohd")
    finally:
        target.kill()
        daemon.terminate()
        daemon.wait()
        if not os.environ.get("KEEP_TMP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
