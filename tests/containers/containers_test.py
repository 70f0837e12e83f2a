#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
# Containers through the --ooh chain, driven the way a user drives them: a
# redis in a container built here (no registry: a rootfs of Debian's
# redis-server and busybox-static, `podman import`ed, or an OCI bundle for
# runc) is loaded with keys, pre-checkpointed twice with keys rewritten in
# between, checkpointed on top of the pre-checkpoints, restored, and must
# hold what it held at the checkpoint (DBSIZE and DEBUG DIGEST).
#
#   podman: podman container checkpoint --pre-checkpoint x2,
#           podman container checkpoint --with-previous, podman container restore
#   runc:   runc checkpoint --pre-dump x2, runc checkpoint --parent-path,
#           runc restore
#
# The machine is set up as the README's "Containers" section tells a user
# to, in a mount namespace of the test's own, so that nothing of it
# outlives the test: the project installed (`meson install` of this build
# over an overlay of its prefix, ldconfig), the patched criu linked into
# PATH as `criu`, `ooh` in /etc/criu/runc.conf (an overlay of /etc), oohd
# on its default socket /run/oohd/oohd.sock (an overlay of /run). No
# environment variable, no runtime option: podman passes its runtime only
# PATH anyway. podman's storage and state are the test's own too, and
# /var/lib (its blob cache) an overlay.
#
# The container runs a shell as its pid 1 and redis as the shell's child.
# Asserted besides the restore: every step went through ooh_plugin.so and
# oohd (CRIU's log of the step names the plugin tracking both tasks by
# their pids in our PID namespace, and oohd has a session for each with
# one collect per dump so far); steps taken on top of parent images write
# fewer pages than the first pre-dump and take pages from the parent; with runc.conf emptied the runc pre-dump
# is refused with CRIU's error naming --ooh. Pages written, freezing and
# frozen times and each command's time are printed per step.
#
# usage: containers_test.py podman|runc CRIU MESON BUILD_ROOT PREFIX
#                           LIBEXECDIR SBINDIR BINDIR
# CRIU (the build's patched criu, '' when not built) only decides the skip.
# Exit 77 (skip) without root, the patched CRIU or the programs.
import ctypes
import glob
import json
import os
import random
import resource
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

# Far below Meson's timeout; a podman checkpoint of this redis takes ~1 s.
STEP_DEADLINE = 120
KEYS = 100_000
REWRITES = 500  # keys rewritten between steps


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


def wait_for(cond, what, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise Failure("timed out after %.0f s waiting for %s" % (timeout, what))


def run(argv, what, env=None, stdout=None):
    """Runs one command with a deadline; its output goes to the test's log
    (or to stdout=FILE) and a failure names the command and its output."""
    log("$ " + " ".join(argv))
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                         stdout=stdout or subprocess.PIPE, stderr=subprocess.STDOUT,
                         env=env, start_new_session=True, text=True)
    try:
        out, _ = p.communicate(timeout=STEP_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
        raise Failure("%s: no answer within %d s, killed; its output:\n%s"
                      % (what, STEP_DEADLINE, out or ""))
    if p.returncode != 0:
        raise Failure("%s failed (exit %d); its output:\n%s" % (what, p.returncode, out or ""))
    return out or ""


# ---- redis over a unix socket in a directory bind-mounted into the container

def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespConn:
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
            raise Failure("redis closed the connection")
        self.buf += chunk

    def reply(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        kind, rest = line[:1], line[1:]
        if kind == b"-":
            raise Failure("redis: " + rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        return rest

    def call(self, *args):
        self.s.sendall(resp(*args))
        return self.reply()

    def pipeline(self, cmds, batch=5_000):
        for i in range(0, len(cmds), batch):
            part = cmds[i:i + batch]
            self.s.sendall(b"".join(resp(*c) for c in part))
            for _ in part:
                self.reply()


class Redis:
    def __init__(self, datadir):
        self.sock = os.path.join(datadir, "redis.sock")
        self.rng = random.Random(11)
        self.gen = 0

    # Inside the container (the directory is mounted at /data): a shell as
    # pid 1, as a container's init or entrypoint script, and redis as its
    # child, so that the dumps have a tree of two tasks to track.
    ARGV = ["/bin/sh", "-c", shlex.join([
        "/usr/bin/redis-server", "--port", "0", "--unixsocket", "/data/redis.sock",
        "--save", "", "--appendonly", "no", "--enable-debug-command", "local"]) + " & wait"]

    def answers(self):
        try:
            c = RespConn(self.sock)
        except OSError:
            return False
        try:
            return c.call("PING") == b"PONG"
        finally:
            c.close()

    def _value(self, i):
        return ("g%d-%d-" % (self.gen, i)).encode().ljust(100, b"r")

    def load(self):
        c = RespConn(self.sock)
        c.pipeline([("SET", "key:%06d" % i, self._value(i)) for i in range(KEYS)])
        c.close()

    def modify(self):
        self.gen += 1
        c = RespConn(self.sock)
        c.pipeline([("SET", "key:%06d" % i, self._value(i))
                    for i in self.rng.sample(range(KEYS), REWRITES)]
                   + [("SET", "new:%d:%d" % (self.gen, i), self._value(i)) for i in range(50)])
        c.close()

    def clients(self):
        c = RespConn(self.sock)
        n = c.call("CLIENT", "LIST").count(b"\n")
        c.close()
        return n

    def quiesce(self):
        # Only the asking connection itself: CRIU dumps no client socket.
        wait_for(lambda: self.clients() == 1, "redis to close the test's client connections")

    def snapshot(self):
        c = RespConn(self.sock)
        st = (c.call("DBSIZE"), c.call("DEBUG", "DIGEST"))
        c.close()
        return st

    def verify(self, expected):
        wait_for(self.answers, "the restored redis to answer on " + self.sock)
        got = self.snapshot()
        if got != expected:
            raise Failure("restored redis: DBSIZE, DEBUG DIGEST = %s, expected %s"
                          % (got, expected))
        return "DBSIZE %d, DEBUG DIGEST %s match" % (got[0], got[1].decode())


# ---- the image: Debian's redis-server and busybox-static, no registry

def build_rootfs(root):
    """A root filesystem with redis-server, the libraries it links and a
    busybox shell, copied from the packages installed here."""
    real = os.path.realpath(shutil.which("redis-server"))
    files = {real: "/usr/bin/redis-server", shutil.which("busybox"): "/bin/busybox"}
    out = subprocess.run(["ldd", real], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        for word in line.split():
            if word.startswith("/"):
                files[word] = word
    for d in ("bin", "data", "dev", "etc", "proc", "sys", "tmp", "run"):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    for src, dst in files.items():
        path = root + dst
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy2(os.path.realpath(src), path)
    os.symlink("busybox", os.path.join(root, "bin", "sh"))
    with open(os.path.join(root, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/:/bin/sh\n")


def busybox_is_static():
    out = subprocess.run(["file", "-L", shutil.which("busybox")], capture_output=True, text=True)
    if out.returncode != 0:  # no file(1): ask the loader instead
        return subprocess.run(["ldd", shutil.which("busybox")], capture_output=True).returncode != 0
    return "statically linked" in out.stdout or "static-pie" in out.stdout


# ---- CRIU's statistics and log

def decode_varints(buf):
    """Fields of a protobuf message holding only varints and nested
    messages: {field: int or bytes}."""
    fields, i = {}, 0

    def varint():
        nonlocal i
        v = shift = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v
    while i < len(buf):
        key = varint()
        if key & 7 == 0:
            fields[key >> 3] = varint()
        elif key & 7 == 2:
            n = varint()
            fields[key >> 3] = buf[i:i + n]
            i += n
        else:
            raise Failure("stats image: unexpected wire type %d" % (key & 7))
    return fields


IMG_SERVICE_MAGIC = 0x55105940  # criu/include/magic.h
STATS_MAGIC = 0x57093306


def read_dump_stats(path):
    """CRIU's stats-dump image: the service magic, the stats magic, then
    one length-prefixed stats_entry (images/stats.proto) whose field 1 is
    the dump_stats_entry."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        magics = struct.unpack_from("<II", data, 0)
        n = struct.unpack_from("<I", data, 8)[0]
        if magics != (IMG_SERVICE_MAGIC, STATS_MAGIC) or 12 + n != len(data):
            raise ValueError("magics %#x %#x, entry of %d bytes in a file of %d"
                             % (magics[0], magics[1], n, len(data)))
        dump = decode_varints(decode_varints(data[12:])[1])
    except (struct.error, IndexError, KeyError, ValueError, Failure) as e:
        raise Failure("can't read CRIU's statistics in %s: %s" % (path, e))
    return {"freezing_us": dump.get(1, 0), "frozen_us": dump.get(2, 0),
            "memdump_us": dump.get(3, 0), "pages_scanned": dump.get(5, 0),
            "pages_parent": dump.get(6, 0), "pages_written": dump.get(7, 0)}


def check_ooh_log(logpath, host_pids, first):
    """The step went through the plugin: CRIU's log names it tracking each
    of the container's tasks by our pid for it."""
    try:
        text = open(logpath, errors="replace").read()
    except OSError as e:
        raise Failure("no CRIU log for the step: %s" % e)
    if "ooh: " not in text:
        raise Failure("%s: no line of ooh_plugin.so: the dump did not go through ooh "
                      "(is `ooh` in the configuration file?)" % logpath)
    for line in text.splitlines():
        if "Error" in line and ("ooh: " in line or "mem.c" in line or "in parent" in line):
            raise Failure("%s: a memory tracking error: %s" % (logpath, line.strip()))
    for pid in host_pids:
        want = ("started tracking %d " % pid) if first else ("%d is tracked by oohd as" % pid)
        if want not in text:
            found = [l.strip() for l in text.splitlines() if "ooh: " in l][:8]
            raise Failure("%s: expected the plugin to log '%s...'; its lines:\n%s"
                          % (logpath, want, "\n".join(found)))


def container_tasks(init_pid):
    """The container's tasks by our pids: its init (the shell) and redis."""
    def children():
        with open("/proc/%d/task/%d/children" % (init_pid, init_pid)) as f:
            return [int(c) for c in f.read().split()]
    wait_for(lambda: children(), "the container's shell to start redis")
    pids = [init_pid] + children()
    for pid in pids:
        log("  task %d here is pid %d in the container" % (pid, ns_pids(pid)[-1]))
    if ns_pids(init_pid)[-1] != 1:
        raise Failure("the container's init (pid %d here) is not pid 1 in a PID namespace "
                      "of its own: NSpid %s" % (init_pid, ns_pids(init_pid)))
    return pids


def ns_pids(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return [pid]


def check_oohd_session(oohctl, pid, env, collects):
    """oohd tracks the container's process (by its pid in oohd's PID
    namespace) and has collected from it once per dump so far."""
    out = run([oohctl, "stats", str(pid), "--json"], "oohctl stats %d" % pid, env=env)
    try:
        st = json.loads(out)
    except ValueError:
        raise Failure("oohctl stats %d: not JSON: %s" % (pid, out))
    log("  oohd: %s" % json.dumps(st, sort_keys=True))
    if st.get("pid") != pid or not st.get("alive") or st.get("collects") != collects:
        raise Failure("oohd's session of pid %d after %d dumps: %s (expected %d collects)"
                      % (pid, collects, out.strip(), collects))


def report(name, st):
    log("  %-14s %7d pages written, %7d in parent, freezing %7.1f ms, frozen %7.1f ms, "
        "command %7.0f ms" % (name, st["pages_written"], st["pages_parent"],
                             st["freezing_us"] / 1000, st["frozen_us"] / 1000, st["step_ms"]))


def check_incremental(steps):
    """Every step taken on top of parent images writes fewer pages than the
    first pre-dump and takes pages from its parent."""
    first = steps[0][1]["pages_written"]
    for name, st, parent in steps[1:]:
        if not parent:
            continue
        if st["pages_written"] >= first:
            raise Failure("%s wrote %d pages, not fewer than the first pre-dump's %d: "
                          "not incremental" % (name, st["pages_written"], first))
        if st["pages_parent"] == 0:
            raise Failure("%s took no page from its parent images" % name)


# ---- podman

class Podman:
    def __init__(self, work, env):
        self.work, self.env = work, env
        # Private storage and state: the machine's containers are untouched.
        self.base = ["podman", "--root", os.path.join(work, "storage"),
                     "--runroot", os.path.join(work, "run"), "--storage-driver", "overlay",
                     "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--tmpdir", os.path.join(work, "tmp")]
        self.name = None

    def __call__(self, *args, what=None):
        return run(self.base + list(args), what or "podman " + args[0], env=self.env)

    def cleanup(self):
        if self.name:
            subprocess.run(self.base + ["rm", "-f", "-t", "0", self.name], env=self.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=STEP_DEADLINE)
        subprocess.run(self.base + ["rmi", "-a", "-f"], env=self.env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=STEP_DEADLINE)
        unmount_under(self.work)


def unmount_under(path):
    """The overlay driver keeps its directory bind-mounted on itself (and a
    container's layers and shm while it exists): unmount what is left
    under path, deepest first, before it is removed."""
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [l.split()[4] for l in f]
    for mnt in sorted((m for m in points if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)


def podman_leftovers():
    """What podman leaves outside its --root and --runroot: the parent
    cgroups of its cgroupfs manager (cgroup v1: one per controller, v2: one)
    and its lock segment in /dev/shm."""
    return set(glob.glob("/sys/fs/cgroup/*/libpod_parent") +
               glob.glob("/sys/fs/cgroup/libpod_parent") + glob.glob("/dev/shm/libpod_lock"))


def remove_leftovers(paths):
    """Removes what podman_leftovers() found that the test made: cgroup trees
    (empty once its containers are gone) deepest first. Left behind,
    podman's cpuset parent holds every CPU, and a later cgroup of the
    machine can't be made cpu_exclusive (CRIU's zdtm cgroup02 then fails
    to restore)."""
    for top in paths:
        if os.path.isfile(top):
            os.unlink(top)
            continue
        for d, _, _ in os.walk(top, topdown=False):
            try:
                os.rmdir(d)
            except OSError as e:
                log("could not remove %s: %s" % (d, e))


def limits():
    # runc sets the container's hard limits from its parent and needs
    # CAP_SYS_RESOURCE to raise one (podman's defaults are 1048576): stay
    # below ours.
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return nofile, nproc


def podman_chain(work, env, oohctl):
    rootfs = os.path.join(work, "rootfs")
    build_rootfs(rootfs)
    tarball = os.path.join(work, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tarball, "."], check=True)
    pm = Podman(work, env)
    try:
        pm("import", tarball, "localhost/ooh-redis:test", what="podman import of the rootfs")
        data = os.path.join(work, "data")
        os.makedirs(data)
        nofile, nproc = limits()
        pm.name = "ooh-redis-%d" % os.getpid()
        pm("run", "-d", "--name", pm.name, "--network", "none",
           "--ulimit", "nofile=%d:%d" % (nofile, nofile),
           "--ulimit", "nproc=%d:%d" % (nproc, nproc),
           "-v", data + ":/data", "localhost/ooh-redis:test", *Redis.ARGV)
        r = Redis(data)
        wait_for(r.answers, "redis in the container to answer on " + r.sock)
        r.load()
        userdata = pm("inspect", "--format", "{{.StaticDir}}", pm.name).strip()

        pids = container_tasks(int(pm("inspect", "--format", "{{.State.Pid}}",
                                      pm.name).strip()))

        steps = []
        for n in (1, 2):
            r.quiesce()
            t = time.monotonic()
            out = pm("container", "checkpoint", "--pre-checkpoint", "--keep", "--print-stats",
                     pm.name, what="podman container checkpoint --pre-checkpoint (%d)" % n)
            st = podman_stats(out, userdata)
            st["step_ms"] = (time.monotonic() - t) * 1000
            check_ooh_log(os.path.join(userdata, "dump.log"), pids, first=n == 1)
            # podman hands runc no parent for a pre-checkpoint: each is a
            # full pre-dump, and --with-previous builds on the last one.
            steps.append(("pre-checkpoint %d" % n, st, False))
            report(steps[-1][0], st)
            for pid in pids:
                check_oohd_session(oohctl, pid, env, n)
            r.modify()
        r.quiesce()
        expected = r.snapshot()
        r.quiesce()
        t = time.monotonic()
        out = pm("container", "checkpoint", "--with-previous", "--keep", "--print-stats",
                 pm.name, what="podman container checkpoint --with-previous")
        st = podman_stats(out, userdata)
        st["step_ms"] = (time.monotonic() - t) * 1000
        check_ooh_log(os.path.join(userdata, "dump.log"), pids, first=False)
        steps.append(("checkpoint", st, True))
        report("checkpoint", st)
        t = time.monotonic()
        pm("container", "restore", "--keep", pm.name, what="podman container restore")
        log("  restore        %.0f ms (podman container restore)" % ((time.monotonic() - t) * 1000))
        log("  restored redis: " + r.verify(expected))
        check_incremental(steps)
        return steps
    finally:
        pm.cleanup()


def podman_stats(out, userdata):
    """CRIU's statistics of the step: podman's --print-stats prints some of
    them; the pages taken from the parent images are only in the stats-dump
    image runc leaves in the work directory (kept by --keep)."""
    lines = out.splitlines()
    try:
        start = lines.index("{")
        st = json.loads("\n".join(lines[start:]))["container_statistics"][0]["criu_statistics"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise Failure("no CRIU statistics in podman's output:\n" + out)
    img = read_dump_stats(os.path.join(userdata, "stats-dump"))
    if img["pages_written"] != st.get("pages_written", 0):
        raise Failure("podman printed %s pages written, CRIU's stats-dump says %d"
                      % (st.get("pages_written"), img["pages_written"]))
    return img


# ---- runc on an OCI bundle

def runc_chain(work, env, oohctl):
    bundle = os.path.join(work, "bundle")
    os.makedirs(bundle)
    rootfs = os.path.join(bundle, "rootfs")
    build_rootfs(rootfs)
    data = os.path.join(work, "data")
    os.makedirs(data)
    run(["runc", "spec", "--bundle", bundle], "runc spec", env=env)
    cfgpath = os.path.join(bundle, "config.json")
    with open(cfgpath) as f:
        cfg = json.load(f)
    nofile, nproc = limits()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = Redis.ARGV
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile},
                                 {"type": "RLIMIT_NPROC", "hard": nproc, "soft": nproc}]
    cfg["root"]["readonly"] = False
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": data,
                          "options": ["rbind", "rw"]})
    with open(cfgpath, "w") as f:
        json.dump(cfg, f, indent=1)

    state = os.path.join(work, "runc-state")
    # runc's own errors go to --log: its stdio is the container's.
    runc_log = os.path.join(work, "runc.log")
    runc = ["runc", "--root", state, "--log", runc_log]
    name = "ooh-redis-%d" % os.getpid()
    out = subprocess.DEVNULL
    started = False
    try:
        # Detached, its stdio /dev/null: CRIU can't dump a file of ours
        # that is outside the container's mounts.
        run(runc + ["run", "-d", "--bundle", bundle, "--pid-file", os.path.join(work, "pid"),
                    name], "runc run", env=env, stdout=out)
        started = True
        r = Redis(data)
        wait_for(r.answers, "redis in the container to answer on " + r.sock)
        r.load()
        pids = container_tasks(int(open(os.path.join(work, "pid")).read()))
        without_ooh(runc + ["checkpoint", "--pre-dump"], name, work, env)
        steps = []
        for n in (1, 2):
            r.quiesce()
            img = os.path.join(work, "img", str(n))
            args = ["checkpoint", "--pre-dump", "--image-path", img, "--work-path", img]
            if n > 1:
                args += ["--parent-path", "../%d" % (n - 1)]
            t = time.monotonic()
            run(runc + args + [name], "runc checkpoint --pre-dump (%d)" % n, env=env)
            st = read_dump_stats(os.path.join(img, "stats-dump"))
            st["step_ms"] = (time.monotonic() - t) * 1000
            check_ooh_log(os.path.join(img, "dump.log"), pids, first=n == 1)
            steps.append(("pre-dump %d" % n, st, n > 1))
            report(steps[-1][0], st)
            for pid in pids:
                check_oohd_session(oohctl, pid, env, n)
            r.modify()
        r.quiesce()
        expected = r.snapshot()
        r.quiesce()
        img = os.path.join(work, "img", "dump")
        t = time.monotonic()
        run(runc + ["checkpoint", "--image-path", img, "--work-path", img, "--parent-path",
                    "../2", name], "runc checkpoint --parent-path", env=env)
        st = read_dump_stats(os.path.join(img, "stats-dump"))
        st["step_ms"] = (time.monotonic() - t) * 1000
        check_ooh_log(os.path.join(img, "dump.log"), pids, first=False)
        steps.append(("checkpoint", st, True))
        report("checkpoint", st)
        t = time.monotonic()
        run(runc + ["restore", "-d", "--image-path", img, "--work-path", img, "--bundle", bundle,
                    name], "runc restore", env=env, stdout=out)
        log("  restore        %.0f ms (runc restore)" % ((time.monotonic() - t) * 1000))
        log("  restored redis: " + r.verify(expected))
        check_incremental(steps)
        return steps
    except Failure as e:
        raise Failure("%s\nlast lines of %s:\n%s" % (e, runc_log, tail(runc_log)))
    finally:
        if started:
            subprocess.run(runc + ["delete", "-f", name], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=STEP_DEADLINE)


def without_ooh(cmd, name, work, env):
    """The control: with runc.conf emptied the same pre-dump is refused on
    this kernel, and CRIU's error names --ooh (where soft-dirty exists it
    would work without ooh: then say so and go on)."""
    criu_conf = RUNC_CONF
    img = os.path.join(work, "img", "no-ooh")
    with open(criu_conf, "w") as f:
        f.write("# ooh\n")
    try:
        subprocess.run(cmd + ["--image-path", img, "--work-path", img, name], env=env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=STEP_DEADLINE, check=True)
        log("  without ooh in %s the pre-dump works here (the kernel has soft-dirty)"
            % criu_conf)
    except subprocess.CalledProcessError:
        text = open(os.path.join(img, "dump.log"), errors="replace").read()
        if "Use --ooh" not in text:
            raise Failure("without ooh in %s the pre-dump failed, but not for want of "
                          "--ooh:\n%s" % (criu_conf, tail(os.path.join(img, "dump.log"))))
        log("  without ooh in %s: refused, CRIU says: %s" % (
            criu_conf, [l for l in text.splitlines() if "Use --ooh" in l][0].split(": ", 1)[-1]))
    finally:
        with open(criu_conf, "w") as f:
            f.write("ooh\n")


def overlay(path, work, name, lowers=()):
    """path, writable in this mount namespace only: an overlay of it (under
    the given extra lower directories) whose changes go to work."""
    d = os.path.join(work, "overlay", name)
    os.makedirs(os.path.join(d, "upper"))
    os.makedirs(os.path.join(d, "work"))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s,upperdir=%s/upper,workdir=%s/work"
                    % (":".join(list(lowers) + [path]), d, d), path], check=True)
    return path


def private_machine(work, meson, build, prefix, dirs):
    """The machine as a user sets it up, in a mount namespace of our own
    (nothing of it outlives the test): the project installed (meson install,
    ldconfig), the patched criu linked first in PATH, `ooh` in
    /etc/criu/runc.conf, oohd on its default socket. Returns the PATH."""
    dest = os.path.join(work, "dest")
    r = subprocess.run([meson, "install", "-C", build, "--no-rebuild", "--quiet",
                        "--destdir", dest], capture_output=True, text=True)
    if r.returncode != 0:
        raise Failure("meson install --destdir %s failed:\n%s%s" % (dest, r.stdout, r.stderr))
    # Python 3.11 has no os.unshare; we have no threads (CLONE_NEWNS needs that).
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:
        raise Failure("unshare(CLONE_NEWNS): %s" % os.strerror(ctypes.get_errno()))
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    # /var/lib: podman keeps a blob cache in /var/lib/containers whatever
    # its --root.
    mounts = [overlay(prefix, work, "prefix", [dest + prefix]), overlay("/etc", work, "etc"),
              overlay("/run", work, "run"), overlay("/var/lib", work, "varlib")]
    # The user's steps (README, "Containers").
    subprocess.run(["ldconfig"], check=True)
    sbin = os.path.join(prefix, dirs["sbindir"])
    os.makedirs(sbin, exist_ok=True)
    os.symlink(os.path.join(prefix, dirs["libexecdir"], "ooh", "criu"), os.path.join(sbin, "criu"))
    os.makedirs("/etc/criu", exist_ok=True)
    with open(RUNC_CONF, "w") as f:
        f.write("ooh\n")
    return mounts, sbin + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")


RUNC_CONF = "/etc/criu/runc.conf"


def main():
    if len(sys.argv) != 9 or sys.argv[1] not in ("podman", "runc"):
        sys.exit("usage: containers_test.py podman|runc CRIU MESON BUILD_ROOT PREFIX "
                 "LIBEXECDIR SBINDIR BINDIR")
    mode, criu, meson, build, prefix = sys.argv[1:6]
    dirs = dict(zip(("libexecdir", "sbindir", "bindir"), sys.argv[6:9]))
    if not criu:
        skip("missing build outputs (patched CRIU not built: see the CRIU part of meson's summary)")
    if os.getuid() != 0:
        skip("needs root (containers as root, CRIU dumps and restores them)")
    need = ["runc", "redis-server", "busybox", "ldd", "tar", "ldconfig"]
    for prog in need + (["podman"] if mode == "podman" else []):
        if not shutil.which(prog):
            skip("%s is not installed (scripts/deps/containers.txt lists its package)" % prog)
    if not busybox_is_static():
        skip("busybox is not statically linked (install busybox-static)")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL: terminated (Meson's timeout?)"))
    work = tempfile.mkdtemp(prefix="ooh-containers-%s." % mode, dir="/var/tmp")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MALLOC_PERTURB_", "CRIU_FAULT", "CRIU_CONFIG_FILE", "CRIU_LIBS_DIR",
                        "OOH_SOCKET")}
    mounts = []
    daemon = None
    leftovers_before = podman_leftovers()
    try:
        mounts, env["PATH"] = private_machine(work, meson, build, prefix, dirs)
        oohd = os.path.join(prefix, dirs["sbindir"], "oohd")
        oohctl = os.path.join(prefix, dirs["bindir"], "oohctl")
        os.makedirs("/run/oohd", exist_ok=True)
        daemon = subprocess.Popen([oohd, "--foreground", "--log-level", "info"], env=env,
                                  stdout=open(os.path.join(work, "oohd.log"), "w"),
                                  stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists("/run/oohd/oohd.sock"), "oohd's socket")
        log("criu in PATH: %s -> %s; %s: %s; oohd on /run/oohd/oohd.sock (all in a mount "
            "namespace of the test's own)" % (shutil.which("criu", path=env["PATH"]),
                                              os.path.realpath(shutil.which("criu", path=env["PATH"])),
                                              RUNC_CONF, open(RUNC_CONF).read().strip()))
        steps = (podman_chain if mode == "podman" else runc_chain)(work, env, oohctl)
        log("")
        log("%-16s | %13s | %15s | %11s | %9s | %10s" % (
            "step", "pages written", "pages in parent", "freezing ms", "frozen ms", "command ms"))
        for name, st, _ in steps:
            log("%-16s | %13d | %15d | %11.1f | %9.1f | %10.0f" % (
                name, st["pages_written"], st["pages_parent"], st["freezing_us"] / 1000,
                st["frozen_us"] / 1000, st["step_ms"]))
        log("")
        log("PASS: %s container pre-checkpointed twice and checkpointed through ooh, "
            "restored with its data" % mode)
    except Failure as e:
        print("FAIL: %s" % e)
        print("---- oohd log (last lines):\n" + tail(os.path.join(work, "oohd.log")))
        sys.exit(1)
    finally:
        if daemon:
            daemon.terminate()
            daemon.wait()
        unmount_under(work)
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        remove_leftovers(podman_leftovers() - leftovers_before)
        if os.environ.get("KEEP_TMP"):
            print("kept " + work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
