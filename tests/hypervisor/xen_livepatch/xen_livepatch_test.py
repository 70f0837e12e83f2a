#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Boots Debian's Xen 4.17 in QEMU (TCG, -cpu qemu64) with Debian's 6.1
kernel as a PV dom0 and a busybox initramfs, and checks that the
Shadow-PML livepatch payload loads into it, answers, and goes away again.

The guest (guest-init.sh) runs the steps and prints OOH-XL lines; this
script builds the payload (hypervisor/xen/livepatch/build-livepatch,
cached), boots, and judges every line. Prints the measured upload+apply
and revert+unload times (TCG time: emulated, not a real host's).
Exit codes: 0 pass, 1 fail, 77 skip.
"""

import argparse
import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "vm"))
from run_vm import cpio_newc, ldd_libs  # noqa: E402  (the vm suite's initramfs writer)

SKIP = 77
ENOSYS, EINVAL, EOPNOTSUPP, ESRCH = 38, 22, 95, 3
# What Xen's own do_hvm_op answers dom0 (PV) to sub-ops the payload passes on.
OTHER_SUB_OPS = {"get-time": 0, "get-param-absent": -ESRCH, "get-param-self": -EINVAL,
                 "unused-sub-op": -ENOSYS}


def log(msg):
    print(msg, flush=True)


def read_env(path):
    env = {}
    for line in open(path):
        k, _, v = line.strip().partition("=")
        env[k] = v
    return env


def other_build_payload(good, build_id, out):
    """The payload with the Xen build-id it depends on changed: what a
    payload built for another Xen build looks like to the loader."""
    data = open(good, "rb").read()
    want = bytes.fromhex(build_id)
    other = bytes([want[0] ^ 0xff]) + want[1:]
    if data.count(want) != 2:
        raise RuntimeError("expected Xen's build-id twice in the payload, found %d"
                           % data.count(want))
    open(out, "wb").write(data.replace(want, other))


def build_initramfs(args, env, kernel_dir, workdir):
    root = tempfile.mkdtemp(prefix="ooh-xen-initramfs-")
    try:
        for d in ["bin", "sbin", "lib/modules", "proc", "sys", "dev", "tmp", "etc"]:
            os.makedirs(os.path.join(root, d), exist_ok=True)
        shutil.copy(args.busybox, os.path.join(root, "bin/busybox"))
        shutil.copy(args.init, os.path.join(root, "init"))
        os.chmod(os.path.join(root, "init"), 0o755)
        for name, path in [("ooh-spml-probe", args.probe), ("ooh-xen-livepatch", args.tool),
                           ("xen-livepatch", env["XEN_LIVEPATCH"])]:
            dest = os.path.join(root, "bin", name)
            shutil.copy(path, dest)
            os.chmod(dest, 0o755)
        libs = ldd_libs(env["XEN_LIVEPATCH"])
        if not any("libxenctrl" in l for l in libs):
            raise RuntimeError("xen-livepatch's libxenctrl is not installed (libxenmisc4.17)")
        for lib in libs:
            dest = os.path.join(root, lib.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(os.path.realpath(lib), dest)
        mods = os.path.join(kernel_dir, "lib/modules", args.kernel_release, "kernel/drivers/xen")
        shutil.copy(os.path.join(mods, "xen-privcmd.ko"), os.path.join(root, "lib/modules"))
        shutil.copy(os.path.join(mods, "xenfs/xenfs.ko"), os.path.join(root, "lib/modules"))
        payload = os.path.join(env["OUT"], "ooh-spml.livepatch")
        shutil.copy(payload, os.path.join(root, "ooh-spml.livepatch"))
        other_build_payload(payload, env["XEN_BUILD_ID"],
                            os.path.join(root, "other-build.livepatch"))
        initrd = os.path.join(workdir, "initramfs.cpio")
        cpio_newc(root, initrd)
        return initrd
    finally:
        shutil.rmtree(root, ignore_errors=True)


def boot(args, env, kernel_dir, initrd, transcript):
    xen = os.path.join(args.workdir, "xen")
    with gzip.open(env["XEN_GZ"]) as src, open(xen, "wb") as dst:
        shutil.copyfileobj(src, dst)
    vmlinuz = os.path.join(kernel_dir, "boot", "vmlinuz-" + args.kernel_release)
    for p in (vmlinuz, initrd):
        if "," in p:
            raise RuntimeError("QEMU's multiboot module list cannot hold a ',' in %s" % p)
    cmd = [args.qemu, "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
           "-accel", "tcg", "-cpu", "qemu64", "-m", "1024", "-smp", str(args.smp),
           "-kernel", xen,
           "-append", "console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all "
                      "dom0_mem=512M,max:512M",
           "-initrd", "%s console=hvc0 panic=-1 loglevel=4,%s" % (vmlinuz, initrd)]
    log("booting: " + " ".join(cmd))
    start = time.monotonic()
    status = None
    with open(transcript, "w") as out, open(transcript, errors="replace") as reader:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        seen = ""
        done_at = None
        while status is None:
            try:
                status = "exit %d" % proc.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                pass
            seen = seen[-200:] + reader.read()
            now = time.monotonic()
            if done_at is None and "OOH-XL done" in seen:
                done_at = now
            if done_at is not None and now - done_at > 15:
                status = "killed 15 s after the guest's last step (it did not reboot)"
            elif now - start > args.timeout:
                status = "timeout after %d s" % args.timeout
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log("QEMU %s in %.0f s" % (status, time.monotonic() - start))


class Checks:
    def __init__(self, lines):
        self.lines = lines
        self.steps = {}
        for line in lines:
            m = re.search(r"OOH-XL (\S+) ?(.*)$", line)
            if m and m.group(1) not in self.steps:
                self.steps[m.group(1)] = m.group(2).strip()
        self.failed = 0

    def check(self, what, ok, detail=""):
        log("%s %s%s" % ("PASS" if ok else "FAIL", what, (": " + detail) if detail else ""))
        if not ok:
            self.failed += 1

    def step(self, name):
        return self.steps.get(name, "")

    def console_has(self, text):
        return any(text in line for line in self.lines)


def query_of(text):
    """The probe's three answers in a step's text."""
    rc = {k: int(v) for k, v in re.findall(r"OOH-PROBE (\S+) rc=(-?\d+)", text)}
    fields = dict(re.findall(r"(magic|version|features|virq|max_data_frames|pml_entries|now)=(\S+)",
                             text))
    return rc, fields


def judge(lines, env, syms_addr):
    c = Checks(lines)
    c.check("Xen booted, dom0 ran /init", "buildid" in c.steps,
            "no OOH-XL line on the console" if "buildid" not in c.steps else "")
    c.check("running Xen is the build the payload was made for",
            c.step("buildid") == env["XEN_BUILD_ID"],
            "%s vs %s" % (c.step("buildid"), env["XEN_BUILD_ID"]))
    xs = c.step("xensyms").split()
    c.check("dom0 resolves do_hvm_op through /proc/xen/xensyms",
            len(xs) >= 3 and xs[-1] == "do_hvm_op" and int(xs[0], 16) == syms_addr,
            "%s (xen-syms: %#x)" % (c.step("xensyms"), syms_addr))

    for step in ("before", "after", "tool-after"):
        rc, _ = query_of(c.step(step))
        c.check("%s: HVMOP 0xf0 unknown to Xen (-ENOSYS)" % step,
                [rc.get(k) for k in ("query", "bad-magic", "register")] == [-ENOSYS] * 3,
                c.step(step))
    # Xen's do_hvm_op keeps answering the other sub-ops, applied or not:
    # with the payload they go through its trampoline (hook.S).
    last_now = 0
    for step in ("before", "applied", "after", "tool-applied", "tool-after"):
        rc, f = query_of(c.step(step))
        now = int(f.get("now", "0"))
        c.check("%s: other HVMOPs answered by Xen's own do_hvm_op" % step,
                all(rc.get(k) == v for k, v in OTHER_SUB_OPS.items()) and now > last_now,
                c.step(step))
        last_now = now
    c.check("upload", c.step("upload").startswith("rc=0"), c.step("upload"))
    c.check("apply", c.step("apply").startswith("rc=0"), c.step("apply"))
    c.check("list shows it applied", "ooh-spml" in c.step("list") and "APPLIED" in c.step("list"),
            c.step("list"))
    for step in ("applied", "tool-applied"):
        rc, f = query_of(c.step(step))
        c.check("%s: the payload answers QUERY, PML unavailable here (pml_entries=0)" % step,
                rc.get("query") == 0 and f.get("magic") == "0x4c4d5053" and
                f.get("version") == "1" and f.get("virq") == "23" and
                f.get("max_data_frames") == "256" and f.get("pml_entries") == "0",
                c.step(step))
        c.check("%s: bad magic -EINVAL, REGISTER_RING -EOPNOTSUPP" % step,
                rc.get("bad-magic") == -EINVAL and rc.get("register") == -EOPNOTSUPP,
                c.step(step))
    c.check("the payload's apply hook in Xen's console",
            c.console_has("ooh-spml: Shadow-PML HVMOP 0xf0 applied (PML unavailable on this host)"))
    c.check("the payload's revert hook in Xen's console",
            c.console_has("ooh-spml: Shadow-PML HVMOP 0xf0 reverted"))
    c.check("revert and unload", c.step("revert").startswith("rc=0 unload rc=0 "), c.step("revert"))
    c.check("list no longer shows it", c.step("list-after") == "0", c.step("list-after"))
    c.check("operator script refuses another build's payload, naming both build-ids",
            c.step("mismatch").startswith("rc=1") and "build-id mismatch" in c.step("mismatch")
            and env["XEN_BUILD_ID"] in c.step("mismatch"), c.step("mismatch"))
    c.check("Xen itself refuses it too",
            not c.step("raw-mismatch").startswith("rc=0") and
            c.console_has("check against hypervisor build-id failed"), c.step("raw-mismatch"))
    c.check("operator script loads it", c.step("tool-load").startswith("rc=0"), c.step("tool-load"))
    c.check("operator script's status", "APPLIED" in c.step("tool-status"), c.step("tool-status"))
    c.check("operator script unloads it", c.step("tool-unload").startswith("rc=0"),
            c.step("tool-unload"))
    times = dict(re.findall(r"(\S+)_(?:ms|tries)=(\d+)", c.step("times")))
    c.check("times measured", len(times) == 4, c.step("times"))
    if len(times) == 4:
        log("\nmeasured in dom0 (QEMU TCG, 2 vCPUs, emulated time on a shared host, not a real"
            " machine's):")
        log("  upload+apply  %s ms (apply tries: %s)" % (times["upload+apply"], times["apply"]))
        log("  revert+unload %s ms (revert tries: %s)" % (times["revert+unload"], times["revert"]))
    return c.failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cache-dir", default="")
    ap.add_argument("--build-livepatch", required=True)
    ap.add_argument("--fetch-kernel", required=True)
    ap.add_argument("--kernel-release", default="")
    ap.add_argument("--probe", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--busybox", default="/bin/busybox")
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--xen-version", default="",
                    help="Debian version of xen-hypervisor-4.17-amd64 (default: apt's candidate)")
    args = ap.parse_args()

    qemu = shutil.which(args.qemu)
    if not qemu:
        log("SKIP: %s not found (install qemu-system-x86)" % args.qemu)
        return SKIP
    args.qemu = qemu
    if not args.kernel_release:
        log("SKIP: no Debian kernel headers (linux-headers-amd64), so no dom0 kernel")
        return SKIP
    if not os.path.exists(args.busybox) or "static" not in subprocess.run(
            ["file", "-L", args.busybox], capture_output=True, text=True).stdout:
        log("SKIP: no static busybox at %s (install busybox-static)" % args.busybox)
        return SKIP
    if not args.cache_dir:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        args.cache_dir = os.path.join(base, "ooh")
    os.makedirs(args.workdir, exist_ok=True)

    build = [args.build_livepatch, "--cache", args.cache_dir]
    if args.xen_version:
        build += ["--version", args.xen_version]
    built = subprocess.run(build, stdout=subprocess.PIPE, text=True)
    if built.returncode == SKIP:
        log("SKIP: Debian's Xen 4.17 packages cannot be fetched")
        return SKIP
    if built.returncode != 0:
        log("FAIL: build-livepatch failed")
        return 1
    out = built.stdout.strip().splitlines()[-1]
    env = read_env(os.path.join(out, "build.env"))
    env["OUT"] = out
    log("payload: %s/ooh-spml.livepatch for Xen %s (build-id %s)"
        % (out, env["XEN_VERSION"], env["XEN_BUILD_ID"]))

    fetched = subprocess.run([args.fetch_kernel, args.kernel_release, args.cache_dir],
                             capture_output=True, text=True)
    if fetched.returncode != 0:
        log(fetched.stderr)
        log("SKIP: cannot get Debian's linux-image-%s" % args.kernel_release)
        return SKIP
    kernel_dir = fetched.stdout.strip()

    nm = subprocess.run(["nm", env["XEN_SYMS"]], capture_output=True, text=True, check=True)
    syms_addr = next(int(l.split()[0], 16) for l in nm.stdout.splitlines()
                     if l.split()[-1:] == ["do_hvm_op"])

    initrd = build_initramfs(args, env, kernel_dir, args.workdir)
    transcript = os.path.join(args.workdir, "console.log")
    boot(args, env, kernel_dir, initrd, transcript)
    lines = open(transcript, errors="replace").read().splitlines()
    for line in lines:
        if "OOH-XL" in line or "ooh-spml" in line or "livepatch" in line.lower():
            log("  | " + line)
    failed = judge(lines, env, syms_addr)
    if failed:
        log("\n%d check(s) failed; console tail (%s):" % (failed, transcript))
        for line in lines[-60:]:
            log("  | " + line)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
