#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# Real programs through an --ooh chain: a redis on a TCP port and a 4-thread
# memcached on a unix socket, each loaded with 200k keys, go through
# `criu pre-dump --ooh` x3 (keys rewritten between rounds) -> `criu dump --ooh`
# -> `criu restore -d`, and the restored program must hold what it held at
# the dump (redis: DBSIZE and DEBUG DIGEST, answering on the same port;
# memcached: every key's value). A fresh identical instance of each gets a
# plain full `criu dump` for comparison; pages written and frozen time come
# from CRIU's --display-stats.
#
# Asserted besides the restores (the inflation once seen with memcached:
# RSS 80 -> 541 MiB after one pre-dump, a final dump of 117 711 pages against
# 22 746 for a plain one): tracking and a pre-dump leave the RSS within 1.1x
# of before, the final `dump --ooh` writes no more pages than a plain full
# dump, and no pre-dump more than 1.1x of it. Everything else is printed,
# not asserted.
#
# usage: real_programs_test.py CRIU PLUGIN_SO OOHD
# Exit 77 (skip) without root, the build outputs or the programs.
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

# Far below Meson's timeout; a plain dump of memcached takes ~1 s here.
CRIU_DEADLINE = 90
KEYS = 200_000
ROUNDS = 3  # pre-dumps before the final dump


class Failure(Exception):
    pass


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def log(msg):
    print(msg, flush=True)


def tail(path, n=8):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(%s)\n" % e


def wait_for(cond, what, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise Failure("timed out after %.0f s waiting for %s" % (timeout, what))


# ---- processes this test starts: every one is killed by pid(fd) at exit

class Proc:
    """A program started in its own session, or one restored by CRIU (not
    our child then): held by a pidfd, so a kill never hits a reused pid."""

    def __init__(self, pid, popen=None):
        self.pid = pid
        self.popen = popen
        self.pidfd = os.pidfd_open(pid)

    def alive(self):
        try:
            signal.pidfd_send_signal(self.pidfd, 0)
            return True
        except ProcessLookupError:
            return False

    def kill(self):
        if self.pidfd is None:
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.popen:
            self.popen.wait()
        os.close(self.pidfd)
        self.pidfd = None

    def gone(self):
        """After a dump killed it: reap it so its pid is free for restore."""
        if self.popen:
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise Failure("pid %d still runs after criu dump" % self.pid)
        else:
            wait_for(lambda: not self.alive(), "pid %d to exit after criu dump" % self.pid)
        os.close(self.pidfd)
        self.pidfd = None


procs = []


def start(argv, cwd, logname):
    # setsid: no controlling terminal for CRIU to dump; stdio is a file
    # CRIU reopens at restore. Without Meson's MALLOC_PERTURB_, which makes
    # glibc's malloc touch every page it hands out or frees: the programs
    # run as they would in production.
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_PERTURB_"}
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                         stdout=open(os.path.join(cwd, logname), "w"),
                         stderr=subprocess.STDOUT, start_new_session=True)
    pr = Proc(p.pid, p)
    procs.append(pr)
    return pr


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise Failure("no VmRSS for pid %d" % pid)


def socket_fds(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


# ---- criu

class Criu:
    def __init__(self, criu, plugdir, work, verbosity="-v4"):
        # -v4 logs every page run: the test wants it for its failures, but it
        # costs the --ooh dumps more than plain ones (bench/criu uses -v2).
        self.criu, self.plugdir, self.work, self.verbosity = criu, plugdir, work, verbosity
        # The chain must work without hand-set fault injection (the series
        # probes for breakpoint traps itself).
        self.env = {k: v for k, v in os.environ.items() if k != "CRIU_FAULT"}

    def run(self, action, pid, imgdir, args, ooh=True):
        """Runs one criu step with a deadline; returns its --display-stats
        as a dict (frozen_us, pages_written, ...)."""
        os.makedirs(imgdir, exist_ok=True)
        argv = [self.criu, action, "-D", imgdir, "-o", action + ".log", self.verbosity,
                "--display-stats"]
        if pid:
            argv += ["-t", str(pid)]
        if ooh:
            argv += ["--ooh", "-L", self.plugdir]
        argv += args
        logf = os.path.join(imgdir, action + ".log")
        outf = os.path.join(imgdir, action + ".out")
        with open(outf, "w") as out:
            # Its own process group, so that a hung step dies with its children.
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
            try:
                rc = p.wait(timeout=CRIU_DEADLINE)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                raise Failure("criu %s into %s: no answer within %d s, killed; the last lines "
                              "of %s:\n%s" % (action, imgdir, CRIU_DEADLINE, logf, tail(logf)))
        if rc != 0:
            errs = [l for l in open(logf, errors="replace") if "Error" in l][-10:]
            raise Failure("criu %s into %s failed (exit %d); its errors:\n%s\nlast lines of %s:\n%s"
                          % (action, imgdir, rc, "".join(errs), logf, tail(logf)))
        if ooh:
            # Errors of the memory path or the plugin fail the test, even
            # when criu succeeds (others in the log are harmless).
            for l in open(logf, errors="replace"):
                if "Error" in l and ("ooh: " in l or "mem.c" in l or "in parent" in l):
                    raise Failure("criu %s into %s logged a memory tracking error: %s"
                                  % (action, imgdir, l.strip()))
        return parse_stats(outf)


def parse_stats(path):
    keys = {"Frozen time: ": "frozen_us", "Memory pages written: ": "pages_written",
            "Memory pages skipped from parent: ": "pages_parent",
            "Memory pages scanned: ": "pages_scanned"}
    st = {}
    for line in open(path, errors="replace"):
        for k, name in keys.items():
            if line.startswith(k):
                st[name] = int(line[len(k):].split()[0])
    return st


# ---- redis over TCP (RESP)

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespConn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def close(self):
        self.s.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise Failure("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(1 << 16)
            if not chunk:
                raise Failure("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise Failure("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        return rest

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.reply()

    def pipeline(self, cmds, batch=10_000):
        for i in range(0, len(cmds), batch):
            part = cmds[i:i + batch]
            self.s.sendall(b"".join(resp(*c) for c in part))
            for _ in part:
                self.reply()


class Redis:
    name = "redis"

    def __init__(self, work, seed):
        self.work = work
        os.makedirs(work, exist_ok=True)
        self.port = free_port()
        self.rng = random.Random(seed)
        self.gen = 0

    def start(self):
        self.proc = start(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--daemonize", "no",
                           "--dir", self.work, "--enable-debug-command", "local"],
                          self.work, "redis.log")
        wait_for(self._answers, "redis to answer on port %d" % self.port)
        return self.proc

    def _answers(self):
        try:
            c = RespConn(self.port)
        except OSError:
            return False
        ok = c.call("PING") == b"PONG"
        c.close()
        return ok

    def load(self):
        c = RespConn(self.port)
        c.pipeline([("SET", "key:%06d" % i, self._value(i)) for i in range(KEYS)])
        c.close()

    def _value(self, i):
        return ("g%d-%d-" % (self.gen, i)).encode().ljust(100, b"r")

    def modify(self, n=5000):
        """Rewrites n random keys, adds a few and deletes a few."""
        self.gen += 1
        c = RespConn(self.port)
        cmds = [("SET", "key:%06d" % i, self._value(i))
                for i in self.rng.sample(range(KEYS), n)]
        cmds += [("SET", "new:%d:%d" % (self.gen, i), self._value(i)) for i in range(200)]
        cmds += [("DEL", "key:%06d" % i) for i in self.rng.sample(range(KEYS), 50)]
        c.pipeline(cmds)
        c.close()

    def _connections(self):
        """Redis's ends of TCP connections on its port (ESTABLISHED, CLOSE_WAIT)."""
        n = 0
        with open("/proc/%d/net/tcp" % self.proc.pid) as f:
            next(f)
            for line in f:
                local, st = line.split()[1], line.split()[3]
                if int(local.split(":")[1], 16) == self.port and st in ("01", "08"):
                    n += 1
        return n

    def quiesce(self):
        # No client connection open for CRIU to dump: only the listening socket.
        wait_for(lambda: self._connections() == 0, "redis to close the test's client connections")

    def snapshot(self):
        c = RespConn(self.port)
        st = (c.call("DBSIZE"), c.call("DEBUG", "DIGEST"))
        c.close()
        return st

    def verify(self, expected):
        got = self.snapshot()
        if got != expected:
            raise Failure("restored redis: DBSIZE, DEBUG DIGEST = %s, expected %s" % (got, expected))
        return "redis on port %d: DBSIZE %d, DEBUG DIGEST %s match" % (
            self.port, got[0], got[1].decode())


# ---- memcached over a unix socket (text protocol)

class McConn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(30)
        self.s.connect(path)
        self.buf = b""

    def close(self):
        self.s.close()

    def _fill(self):
        chunk = self.s.recv(1 << 16)
        if not chunk:
            raise Failure("memcached closed the connection")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    # Small batches: memcached stops reading while its replies wait to be
    # read, so a batch must fit in the socket buffers.
    def set_many(self, items, batch=100):
        for i in range(0, len(items), batch):
            part = items[i:i + batch]
            self.s.sendall(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (k, len(v), v) for k, v in part))
            for k, _ in part:
                r = self._line()
                if r != b"STORED":
                    raise Failure("memcached set %s: %s" % (k.decode(), r.decode()))

    def get_many(self, keys):
        self.s.sendall(b"get " + b" ".join(keys) + b"\r\n")
        got = {}
        while True:
            line = self._line()
            if line == b"END":
                return got
            parts = line.split()
            if parts[0] != b"VALUE":
                raise Failure("memcached get: %s" % line.decode())
            n = int(parts[3])
            while len(self.buf) < n + 2:
                self._fill()
            got[parts[1]] = self.buf[:n]
            self.buf = self.buf[n + 2:]


class Memcached:
    name = "memcached"

    def __init__(self, work, seed):
        self.work = work
        os.makedirs(work, exist_ok=True)
        self.sock = os.path.join(work, "mc.sock")
        self.rng = random.Random(seed)
        self.gen = 0
        self.values = {}

    def start(self):
        self.proc = start(["memcached", "-u", "root", "-t", "4", "-m", "1024", "-s", self.sock],
                          self.work, "memcached.log")
        wait_for(lambda: os.path.exists(self.sock), "memcached's socket " + self.sock)
        self.base_sockets = socket_fds(self.proc.pid)
        return self.proc

    def _value(self, i):
        return ("g%d-%d-" % (self.gen, i)).encode().ljust(256, b"m")

    def _set(self, idx):
        items = [(b"key:%06d" % i, self._value(i)) for i in idx]
        c = McConn(self.sock)
        c.set_many(items)
        c.close()
        self.values.update(items)

    def stats(self):
        c = McConn(self.sock)
        c.s.sendall(b"stats\r\n")
        st = {}
        while True:
            line = c._line()
            if line == b"END":
                break
            _, k, v = line.decode().split(" ", 2)
            st[k] = v
        c.close()
        return st

    def load(self):
        self._set(range(KEYS))
        # memcached grows its hash table in a background thread once it holds
        # 1.5 items per bucket (from 2^16 buckets), rewriting every item's
        # chain pointer: whichever round overlaps it dumps nearly every page.
        # Wait for it, so each round's pages are the test's rewrites.
        power = 16
        while KEYS > 1.5 * (1 << power):
            power += 1

        def grown():
            st = self.stats()
            return int(st["hash_power_level"]) >= power and st["hash_is_expanding"] == "0"
        wait_for(grown, "memcached to grow its hash table to 2^%d buckets" % power, 60)

    def modify(self, n=3000):
        self.gen += 1
        self._set(self.rng.sample(range(KEYS), n))

    def quiesce(self):
        wait_for(lambda: socket_fds(self.proc.pid) == self.base_sockets,
                 "memcached to close the test's client connections")

    def snapshot(self):
        return None  # the test keeps every value it wrote

    def verify(self, expected):
        c = McConn(self.sock)
        keys = sorted(self.values)
        bad = 0
        for i in range(0, len(keys), 100):
            part = keys[i:i + 100]
            got = c.get_many(part)
            for k in part:
                if got.get(k) != self.values[k]:
                    bad += 1
                    if bad <= 3:
                        log("  %s: got %r, expected %r" % (k.decode(), (got.get(k) or b"")[:24],
                                                          self.values[k][:24]))
        c.close()
        if bad:
            raise Failure("restored memcached: %d of %d keys differ or are missing" % (bad, len(keys)))
        return "memcached on %s: all %d keys match" % (self.sock, len(keys))


# ---- the two runs per program

def chain(prog, cr, img):
    """pre-dump --ooh x3 -> dump --ooh -> restore; returns its measurements."""
    pid = prog.start().pid
    prog.load()
    prog.quiesce()
    m = {"rss_before": rss_kib(pid)}
    rounds = []
    for n in range(1, ROUNDS + 1):
        args = ["--track-mem"]
        if n > 1:
            args += ["--prev-images-dir", "../%d" % (n - 1)]
        prog.quiesce()
        st = cr.run("pre-dump", pid, os.path.join(img, str(n)), args)
        if n == 1:
            # Nothing written since rss_before: any growth is the tracking's.
            m["rss_after"] = rss_kib(pid)
        rounds.append(st)
        log("  %s pre-dump %d: %7d pages written, %7d in parent, frozen %8.2f ms"
            % (prog.name, n, st.get("pages_written", -1), st.get("pages_parent", -1),
               st.get("frozen_us", 0) / 1000))
        prog.modify()
    prog.quiesce()
    # Taken right before the dump, with no write in between.
    expected = prog.snapshot()
    st = cr.run("dump", pid, os.path.join(img, "dump"), ["--prev-images-dir", "../%d" % ROUNDS])
    log("  %s dump --ooh:  %7d pages written, %7d in parent, frozen %8.2f ms"
        % (prog.name, st.get("pages_written", -1), st.get("pages_parent", -1),
           st.get("frozen_us", 0) / 1000))
    m["dump"] = st
    m["rounds"] = rounds
    prog.proc.gone()
    procs.remove(prog.proc)
    cr.run("restore", None, os.path.join(img, "dump"), ["--restore-detached"], ooh=False)
    restored = Proc(pid)
    procs.append(restored)
    if not restored.alive():
        raise Failure("%s: pid %d not running after restore" % (prog.name, pid))
    prog.proc = restored
    log("  restored " + prog.verify(expected))
    restored.kill()
    return m


def plain(prog, cr, img):
    """A fresh identical instance, same load and rewrites, plain full dump."""
    pid = prog.start().pid
    prog.load()
    for _ in range(ROUNDS):
        prog.modify()
    prog.quiesce()
    st = cr.run("dump", pid, img, [], ooh=False)
    log("  %s plain dump:  %7d pages written, frozen %8.2f ms"
        % (prog.name, st.get("pages_written", -1), st.get("frozen_us", 0) / 1000))
    prog.proc.gone()
    procs.remove(prog.proc)
    return st


def main():
    if len(sys.argv) != 4 or not all(sys.argv[1:]):
        skip("missing build outputs (patched CRIU not built: see the CRIU part of meson's summary)")
    criu, plugin, oohd = sys.argv[1:]
    if os.getuid() != 0:
        skip("needs root (CRIU dumps and restores processes)")
    for f in (criu, plugin, oohd):
        if not os.path.exists(f):
            skip("missing build output " + f)
    for prog in ("redis-server", "memcached"):
        if not shutil.which(prog):
            skip("%s is not installed (scripts/deps/criu.txt lists it)" % prog)

    # Meson's timeout sends SIGTERM: unwind, so that the programs die too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL: terminated (Meson's timeout?)"))
    work = tempfile.mkdtemp(prefix="ooh-criu-real.")
    # CRIU loads every .so of its plugin directory: the plugin's build
    # directory holds only ooh_plugin.so, and its rpath finds libooh there.
    plugdir = os.path.dirname(os.path.abspath(plugin))
    sock = os.path.join(work, "oohd.sock")
    os.environ["OOH_SOCKET"] = sock
    daemon = subprocess.Popen([oohd, "--socket", sock, "--foreground", "--log-level", "info"],
                              stdout=open(os.path.join(work, "oohd.log"), "w"),
                              stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(sock), "oohd's socket")
        cr = Criu(criu, plugdir, work)
        rows = []
        failures = []
        for cls in (Redis, Memcached):
            log("%s: --ooh chain" % cls.name)
            c = chain(cls(os.path.join(work, cls.name), 1), cr, os.path.join(work, cls.name + "-img"))
            log("%s: plain full dump of a fresh identical instance" % cls.name)
            p = plain(cls(os.path.join(work, cls.name + "-plain"), 1), cr,
                      os.path.join(work, cls.name + "-plain-img"))
            rows.append((cls.name, c, p))
            if c["rss_after"] > c["rss_before"] * 1.1:
                failures.append("%s: RSS %d KiB after tracking and a pre-dump, %d KiB before "
                                "(> 1.1x)" % (cls.name, c["rss_after"], c["rss_before"]))
            if c["dump"]["pages_written"] > p["pages_written"]:
                failures.append("%s: the final dump --ooh wrote %d pages, a plain full dump %d"
                                % (cls.name, c["dump"]["pages_written"], p["pages_written"]))
            # Pre-dump 1 saves everything; none may save more than a full
            # dump (10 % for the instances' differences): uffd-wp markers
            # read as swapped pages once made pre-dump 1 of memcached save
            # 121 004 pages against 19 510.
            for n, st in enumerate(c["rounds"], 1):
                if st["pages_written"] > p["pages_written"] * 1.1:
                    failures.append("%s: pre-dump %d --ooh wrote %d pages, a plain full dump %d "
                                    "(> 1.1x)" % (cls.name, n, st["pages_written"],
                                                  p["pages_written"]))

        log("")
        log("%-10s | %18s | %9s | %16s | %9s | %s" % (
            "program", "chain dump pages", "frozen ms", "plain dump pages", "frozen ms",
            "RSS before/after pre-dump"))
        for name, c, p in rows:
            log("%-10s | %18d | %9.1f | %16d | %9.1f | %.1f / %.1f MiB" % (
                name, c["dump"]["pages_written"], c["dump"]["frozen_us"] / 1000,
                p["pages_written"], p["frozen_us"] / 1000,
                c["rss_before"] / 1024, c["rss_after"] / 1024))
        log("")
        if failures:
            raise Failure("; ".join(failures))
        log("PASS: redis (TCP) and memcached (4 threads) restored from --ooh chains; "
            "no RSS or page inflation")
    except Failure as e:
        print("FAIL: %s" % e)
        print("---- oohd log (last lines):\n" + tail(os.path.join(work, "oohd.log")))
        sys.exit(1)
    finally:
        for p in procs:
            p.kill()
        daemon.terminate()
        daemon.wait()
        if os.environ.get("KEEP_TMP"):
            print("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
