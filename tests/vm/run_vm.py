#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Boots Debian's kernel in QEMU (TCG) with an initramfs of the OoH guest
stack, and reports one test's result from what the guest printed.

The tests of a group share one boot: the first test of a `meson test` run
boots the VM under a lock and keeps the console transcript; the others of the
same run (same parent process) read it. Exit codes: 0 pass, 1 fail, 77 skip.
"""

import argparse
import fcntl
import glob
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time

SKIP = 77
# Groups booted on a kernel of another Debian suite (tests/vm/fetch-guest.sh):
# group -> (suite, architecture, flavour).
GUEST_SUITES = {"arm64": ("trixie", "arm64", "arm64"),
                "arm64-16k": ("trixie", "arm64", "arm64-16k"),
                "amd64-612": ("trixie", "amd64", "amd64")}


def log(msg):
    print(msg, flush=True)


def ldd_libs(path):
    """Shared libraries of an ELF binary, as absolute paths (with ld.so)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True)
    libs = []
    for line in out.stdout.splitlines():
        parts = line.split()
        if "=>" in parts:
            target = parts[parts.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])
    return libs


# Where an aarch64 binary's libraries are found on this host: the cross
# toolchain's own (libstdc++) and Debian's arm64 multiarch packages.
AARCH64_LIB_DIRS = ["/usr/aarch64-linux-gnu/lib", "/lib/aarch64-linux-gnu",
                    "/usr/lib/aarch64-linux-gnu"]


def elf_needed(path):
    """DT_NEEDED names and the interpreter of an ELF file (any architecture)."""
    out = subprocess.run(["readelf", "-d", "-l", "-W", path], capture_output=True, text=True,
                         check=True).stdout
    needed, interp = [], None
    for line in out.splitlines():
        if "(NEEDED)" in line:
            needed.append(line.split("[", 1)[1].split("]", 1)[0])
        elif "[Requesting program interpreter:" in line:
            interp = line.split(":", 1)[1].strip().rstrip("]")
    return needed, interp


def cross_libs(paths, search):
    """Libraries of foreign binaries, closed over their dependencies: a list
    of (host path, guest path). ldd cannot run them."""
    found, todo, interp = {}, list(paths), None
    while todo:
        needed, ip = elf_needed(todo.pop())
        interp = interp or ip
        for name in needed:
            if name in found:
                continue
            hit = next((os.path.join(d, name) for d in search
                        if os.path.exists(os.path.join(d, name))), None)
            if not hit:
                raise FileNotFoundError("library %s of an aarch64 binary not found in %s"
                                        % (name, " ".join(search)))
            found[name] = hit
            todo.append(os.path.realpath(hit))
    libs = [(host, "lib/aarch64-linux-gnu/" + name) for name, host in found.items()]
    if interp:
        libs.append((next(os.path.join(d, os.path.basename(interp)) for d in search
                          if os.path.exists(os.path.join(d, os.path.basename(interp)))),
                     interp.lstrip("/")))
    return libs


def cpio_newc(root, out_path):
    """Writes the tree at root as an uncompressed newc cpio archive."""
    ino = 1

    def header(name, mode, size, nlink=1):
        nonlocal ino
        ino += 1
        fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name) + 1, 0]
        return ("070701" + "".join("%08X" % f for f in fields)).encode() + name.encode() + b"\0"

    def pad(f):
        f.write(b"\0" * ((4 - f.tell() % 4) % 4))

    with open(out_path, "wb") as f:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            entries = [] if rel_dir == "." else [rel_dir]
            entries += [os.path.normpath(os.path.join(rel_dir, n)) for n in sorted(filenames)]
            for rel in entries:
                full = os.path.join(root, rel)
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    data = os.readlink(full).encode()
                elif stat.S_ISREG(st.st_mode):
                    with open(full, "rb") as src:
                        data = src.read()
                else:
                    data = b""
                f.write(header(rel, st.st_mode, len(data), 2 if stat.S_ISDIR(st.st_mode) else 1))
                pad(f)
                f.write(data)
                pad(f)
        f.write(header("TRAILER!!!", 0, 0))
        pad(f)


# The arm64 guest's programs, in the aarch64 cross build (scripts/cross/):
# the daemon, CLI and test programs, the guest checks, and the integration
# suite's tests of injection, the daemon and the ground truth.
CROSS_PROGRAMS = {
    "oohd": "oohd/oohd",
    "oohctl": "oohctl/oohctl",
    "ooh-dirty-writer": "tests/progs/ooh-dirty-writer",
    "ooh-inject-target": "tests/progs/ooh-inject-target",
    "ooh-guest-check": "tests/vm/ooh-guest-check",
}
CROSS_TESTS = ["inject", "ground-truth", "ground-truth-daemon", "daemon", "thread-stop", "target",
               "self"]
for _t in CROSS_TESTS:
    CROSS_PROGRAMS["test-" + _t] = "tests/integration/test-" + _t


def is_arm64(args):
    return GUEST_SUITES.get(args.group, ("", ""))[1] == "arm64"


def guest_binaries(args):
    """Programs of the initramfs, name -> host path."""
    if is_arm64(args):
        return {name: os.path.join(args.cross_dir, rel) for name, rel in CROSS_PROGRAMS.items()}
    binaries = {
        "ooh-guest-check": args.guest_check,
        "oohd": args.oohd,
        "ooh-dirty-writer": args.writer,
    }
    if args.oohctl:
        binaries["oohctl"] = args.oohctl
    # Extra host programs (--extra NAME=PATH) run in the x86 guests only.
    for extra in args.extra:
        name, path = extra.split("=", 1)
        binaries[name] = path
    return binaries


def build_initramfs(args, kernel_dir, out_path):
    root = tempfile.mkdtemp(prefix="ooh-initramfs-")
    try:
        for d in ["bin", "sbin", "lib/modules", "lib64", "proc", "sys", "dev", "tmp", "run", "etc"]:
            os.makedirs(os.path.join(root, d), exist_ok=True)
        shutil.copy(args.busybox, os.path.join(root, "bin/busybox"))
        shutil.copy(args.init, os.path.join(root, "init"))
        os.chmod(os.path.join(root, "init"), 0o755)
        with open(os.path.join(root, "etc/passwd"), "w") as f:
            f.write("root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        binaries = guest_binaries(args)
        for name, path in binaries.items():
            shutil.copy(path, os.path.join(root, "bin", name))
        if is_arm64(args):
            search = [os.path.join(args.cross_dir, "libooh")] + AARCH64_LIB_DIRS
            lib_pairs = cross_libs(binaries.values(), search)
        else:
            libs = set()
            for path in binaries.values():
                libs.update(ldd_libs(path))
            lib_pairs = []
            for lib in libs:
                # Libraries of this build are found by a relative RUNPATH that
                # does not hold in the guest: put them on the default path.
                if lib.startswith(("/lib", "/usr/lib")):
                    lib_pairs.append((lib, lib.lstrip("/")))
                else:
                    lib_pairs.append((lib, "usr/lib/x86_64-linux-gnu/" + os.path.basename(lib)))
        for host, guest in lib_pairs:
            dest = os.path.join(root, guest)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(os.path.realpath(host), dest)
        if args.group in ("pml", "plain", "debug"):
            uio = os.path.join(kernel_dir, "lib/modules", args.kernel_release,
                               "kernel/drivers/uio/uio.ko")
            shutil.copy(uio, os.path.join(root, "lib/modules/uio.ko"))
        if args.kmod and os.path.exists(args.kmod):
            shutil.copy(args.kmod, os.path.join(root, "lib/modules/ooh.ko"))
        cpio_newc(root, out_path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def inputs_key(args):
    """Changes whenever an input of the boot changes, or per meson test run."""
    h = hashlib.sha256()
    h.update(str(os.getppid()).encode())
    for path in list(guest_binaries(args).values()) + [args.kmod, args.plugin, args.init,
                                                        __file__]:
        if path and os.path.exists(path):
            st = os.stat(path)
            h.update(("%s %d %d" % (path, st.st_size, st.st_mtime_ns)).encode())
    h.update(args.group.encode())
    h.update(str(args.bench).encode())
    return h.hexdigest()


# Console lines that mean the guest kernel stopped making progress.
STALL_MARKERS = ("OOH-VCPU-STALL", "soft lockup", "detected stalls on CPUs",
                 "self-detected stall", "kthread starved")
# Seconds of console kept after the first stall line (the kernel's backtraces).
STALL_GRACE = 20
# The first line our module prints when it is loaded.
KMOD_LOADED = "ooh: loading out-of-tree module"


def mentions_stall(text):
    return any(m in text for m in STALL_MARKERS)


def first_stall(lines):
    """Index of the first stall line, or None."""
    return next((i for i, line in enumerate(lines) if mentions_stall(line)), None)


def run_qemu(cmd, transcript_tmp, timeout):
    """Runs QEMU with its console in transcript_tmp. Kills it at the time limit
    or STALL_GRACE seconds after a stall line. Returns a status string."""
    start = time.monotonic()
    stalled_at = None
    seen = ""
    with open(transcript_tmp, "w") as out, open(transcript_tmp, errors="replace") as reader:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        status = None
        while status is None:
            try:
                rc = proc.wait(timeout=1)
                status = "exit %d" % rc
                break
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            # Keep a line's worth of the previous read: a marker may straddle.
            seen = seen[-200:] + reader.read()
            if stalled_at is None and mentions_stall(seen):
                stalled_at = now
            if stalled_at is not None and now - stalled_at > STALL_GRACE:
                status = "killed: the guest stalled"
            elif now - start > timeout:
                status = "timeout after %d s" % timeout
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.write("\nOOH-HOST qemu %s in %.0f s\n" % (status, time.monotonic() - start))
    return status


def boot(args, kernel_dir, workdir, transcript):
    initrd = os.path.join(workdir, "initramfs-%s.cpio" % args.group)
    build_initramfs(args, kernel_dir, initrd)
    kernels = sorted(glob.glob(os.path.join(kernel_dir, "boot", "vmlinuz-*")))
    kernel = os.path.join(kernel_dir, "boot", "vmlinuz-" + args.kernel_release)
    if args.group in GUEST_SUITES:
        kernel = kernels[-1]
    console = "ttyAMA0" if is_arm64(args) else "ttyS0"
    cmdline = "console=%s panic=-1 loglevel=4 ooh.group=%s ooh.bench=%d" % (
        console, args.group, 1 if args.bench else 0)
    cmd = [args.qemu, "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
           "-m", "1024", "-smp", "2", "-kernel", kernel, "-initrd", initrd, "-append", cmdline]
    if is_arm64(args):
        # Arm's virt board; -cpu max has every feature the kernel may use
        # (pointer authentication with QEMU's cheap algorithm: TCG is slow
        # enough).
        cmd[1:1] = ["-M", "virt", "-cpu", "max,pauth-impdef=on", "-nic", "none"]
    if args.group in ("pml", "debug"):
        shm = os.path.join(workdir, "pml-shm")
        cmd += ["-plugin", "%s,shm=%s" % (args.plugin, shm),
                "-object", "memory-backend-file,id=pml,share=on,mem-path=%s,size=16M" % shm,
                "-device", "ivshmem-plain,memdev=pml"]
    log("booting: " + " ".join(cmd))
    earlier = []
    for attempt in (1, 2):
        if args.group in ("pml", "debug"):
            with open(shm, "wb") as f:
                f.truncate(16 << 20)
        # The retry runs both vCPUs on one host thread (round-robin TCG): the
        # first boot keeps multi-threaded TCG, where the plugin's vCPUs race
        # for real, and the stall CI saw happened in that mode.
        run = cmd if attempt == 1 else cmd[:1] + ["-accel", "tcg,thread=single"] + cmd[1:]
        status = run_qemu(run, transcript + ".tmp", args.timeout)
        lines = open(transcript + ".tmp", errors="replace").read().splitlines()
        stall = first_stall(lines)
        if stall is None or attempt == 2:
            break
        if any(KMOD_LOADED in l for l in lines[:stall]):
            break   # ooh.ko may be the cause: never boot again to hide it
        # The emulator lost a vCPU before any of our code ran in the guest
        # kernel: report it, keep its console, and boot once more.
        log("OOH-HOST attempt %d: %s before ooh.ko was loaded (%s); booting again"
            " with single-threaded TCG"
            % (attempt, status, lines[stall].strip()))
        earlier = ["OOH-HOST-EARLIER attempt %d (%s): %s" % (attempt, status, l)
                   for l in lines[max(0, stall - 5):stall + 40]]
    if earlier:
        with open(transcript + ".tmp", "a") as out:
            out.write("\n".join(earlier) + "\n")
    os.replace(transcript + ".tmp", transcript)


def bench_table(lines):
    """Tables of the OOH-BENCH lines: ratios only, TCG time is not real time."""
    rows = [dict(kv.split("=", 1) for kv in l.split()[4:] if "=" in kv) | {
        "kind": l.split()[1], "backend": l.split()[2], "mode": l.split()[3]}
        for l in lines if l.startswith("OOH-BENCH ")]
    if not rows:
        log("no benchmark output from the guest")
        return 1
    log("\nPages reported per collect vs pages written (4096-page mapping, one writer):")
    log("%-12s %-5s %8s %9s %7s" % ("backend", "mode", "written", "reported", "ratio"))
    for r in rows:
        if r["kind"] == "ratio":
            w, rep_ = int(r["written"]), int(r["reported"])
            log("%-12s %-5s %8d %9d %7.2f" % (r["backend"], r["mode"], w, rep_, rep_ / w))
    log("\nGround truth (ooh-dirty-writer rounds: maps, moves, discards, threads):")
    log("%-12s %-5s %6s %8s %9s %10s %7s" % ("backend", "mode", "rounds", "written", "exact",
                                             "wholesale", "ratio"))
    for r in rows:
        if r["kind"] == "groundtruth":
            w = int(r["written"])
            rep_ = int(r["exact"]) + int(r["wholesale"])
            log("%-12s %-5s %6s %8d %9s %10s %7.2f" % (r["backend"], r["mode"], r["rounds"], w,
                                                      r["exact"], r["wholesale"], rep_ / w))
    log("\nRing overflow (512-entry ring, burst of 4096 pages between collects):")
    log("%-5s %-6s %8s %9s %10s" % ("mode", "step", "written", "reported", "wholesale"))
    for r in rows:
        if r["kind"] == "overflow":
            log("%-5s %-6s %8s %9s %10s" % (r["mode"], r["step"], r["written"], r["reported"],
                                           "yes" if r["wholesale"] == "1" else "no"))
    return 0


def over_report_table(lines, results):
    """The ground truth's over-report of each backend of one guest, side by
    side: pages reported per page written or discarded. Fails unless every
    ground truth of the guest passed and printed its counts."""
    rows = [l.split() for l in lines if l.startswith("OOH-BENCH groundtruth ")]
    truths = {n: v for n, v in results.items() if n.startswith("ground-truth")}
    log("Ground truth on one kernel (ooh-dirty-writer rounds: maps, moves, discards, threads):")
    log("%-12s %6s %8s %9s %10s %7s" % ("backend", "rounds", "written", "exact", "wholesale",
                                        "ratio"))
    for r in rows:
        kv = dict(x.split("=", 1) for x in r[4:] if "=" in x)
        w, e, h = int(kv["written"]), int(kv["exact"]), int(kv["wholesale"])
        log("%-12s %6s %8d %9d %10d %7.2f" % (r[2], kv["rounds"], w, e, h, (e + h) / max(w, 1)))
    failed = [n for n, (v, _) in truths.items() if v != "PASS"]
    if len(rows) < 2 or not truths or failed:
        log("FAIL: want two ground truths that passed; results: %s" % (
            ", ".join("%s %s" % (n, v) for n, (v, _) in sorted(truths.items())) or "none"))
        return 1
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", required=True,
                    choices=["pml", "plain", "debug"] + list(GUEST_SUITES))
    ap.add_argument("--test", required=True, help="result name to report; 'all' prints every result")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cache-dir", default="",
                    help="default: $XDG_CACHE_HOME/ooh or ~/.cache/ooh")
    ap.add_argument("--kernel-release", default="")
    ap.add_argument("--fetch-kernel", required=True)
    ap.add_argument("--fetch-guest", default="", help="tests/vm/fetch-guest.sh")
    ap.add_argument("--cross-dir", default="",
                    help="the aarch64 cross build (group arm64); empty: not built")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--init", required=True)
    ap.add_argument("--guest-check", required=True)
    ap.add_argument("--oohd", required=True)
    ap.add_argument("--oohctl", default="")
    ap.add_argument("--writer", required=True)
    ap.add_argument("--kmod", default="")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                    help="another program for the guest's /bin (its libraries come along, "
                         "found as ldd finds them, LD_LIBRARY_PATH included)")
    ap.add_argument("--plugin", default="")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--timeout", type=int, default=900)
    args = ap.parse_args()

    if is_arm64(args):
        args.qemu = "qemu-system-aarch64"
        if not args.cross_dir:
            log("SKIP: no aarch64 cross build (install g++-aarch64-linux-gnu and the arm64 "
                "packages of scripts/deps/arm64.txt, then reconfigure)")
            return SKIP
    qemu = shutil.which(args.qemu)
    if not qemu:
        log("SKIP: %s not found (install %s)" % (
            args.qemu, "qemu-system-arm" if is_arm64(args) else "qemu-system-x86"))
        return SKIP
    args.qemu = qemu
    if args.group in GUEST_SUITES:
        pass  # its own kernel (fetch-guest.sh), no module
    elif not args.kernel_release:
        log("SKIP: no Debian kernel headers (linux-headers-amd64), so no guest kernel")
        return SKIP
    if is_arm64(args):
        pass  # trixie's arm64 busybox comes with the kernel
    elif not os.path.exists(args.busybox) or "static" not in subprocess.run(
            ["file", "-L", args.busybox], capture_output=True, text=True).stdout:
        log("SKIP: no static busybox at %s (install busybox-static)" % args.busybox)
        return SKIP
    if args.group == "pml" and not (args.kmod and os.path.exists(args.kmod)):
        log("SKIP: ooh.ko was not built (no kernel headers)")
        return SKIP

    if not args.cache_dir:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        args.cache_dir = os.path.join(base, "ooh")
    os.makedirs(args.workdir, exist_ok=True)
    os.makedirs(args.cache_dir, exist_ok=True)
    transcript = os.path.join(args.workdir, "console-%s.log" % args.group)
    key_file = transcript + ".key"
    key = inputs_key(args)
    with open(os.path.join(args.workdir, "%s.lock" % args.group), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        have = open(key_file).read() if os.path.exists(key_file) else ""
        if have != key or not os.path.exists(transcript):
            if args.group in GUEST_SUITES:
                suite, arch, flavour = GUEST_SUITES[args.group]
                fetched = subprocess.run([args.fetch_guest, suite, arch, args.cache_dir, flavour],
                                         capture_output=True, text=True)
                what = "%s's linux-image-%s" % (suite, flavour)
            else:
                fetched = subprocess.run([args.fetch_kernel, args.kernel_release,
                                          args.cache_dir], capture_output=True, text=True)
                what = "Debian's linux-image-%s" % args.kernel_release
            if fetched.returncode != 0:
                log(fetched.stderr)
                log("SKIP: cannot get %s" % what)
                return SKIP
            kernel_dir = fetched.stdout.strip()
            if is_arm64(args):
                args.busybox = os.path.join(kernel_dir, "usr/bin/busybox")
            boot(args, kernel_dir, args.workdir, transcript)
            with open(key_file, "w") as f:
                f.write(key)
        else:
            log("reusing this run's boot of group '%s'" % args.group)

    lines = open(transcript, errors="replace").read().splitlines()
    results = {}
    for line in lines:
        parts = line.strip().split(" ", 3)
        if len(parts) >= 3 and parts[0] == "OOH-RESULT":
            results.setdefault(parts[1], (parts[2], parts[3] if len(parts) > 3 else ""))
    for line in lines:
        if line.startswith(("OOH-BOOT", "OOH-BENCH", "OOH-NOTE", "OOH-DMESG", "OOH-HOST",
                            "OOH-VCPU-STALL")):
            log(line)
    if args.test == "bench":
        return bench_table(lines)
    if args.test.startswith("over-report"):
        return over_report_table(lines, results)
    if args.test == "all":
        for name, (verdict, detail) in sorted(results.items()):
            log("%-22s %s %s" % (name, verdict, detail))
        return 0 if results and all(v != "FAIL" for v, _ in results.values()) else 1
    if args.test not in results:
        log("FAIL: the guest printed no result for '%s'" % args.test)
        stall = first_stall(lines)
        if stall is not None:
            log("the guest kernel stalled; console from the first stall report:")
            for line in lines[max(0, stall - 10):stall + 60]:
                log("  | " + line)
        log("console tail:")
        for line in lines[-40:]:
            log("  | " + line)
        return 1
    verdict, detail = results[args.test]
    log("%s: %s" % (verdict, detail))
    return {"PASS": 0, "SKIP": SKIP}.get(verdict, 1)


if __name__ == "__main__":
    sys.exit(main())
