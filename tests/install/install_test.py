#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`meson install` into a scratch DESTDIR, then checks what users rely on:
oohd, oohctl, libooh with its headers and pkg-config file, the systemd units,
and, when CRIU was built, the patched criu beside ooh_plugin.so in OoH's own
plugin directory, which that criu searches by default. Nothing may land in
/usr/lib/criu: a stock criu refuses to run with a plugin it does not know.

usage: install_test.py MESON BUILD_ROOT PREFIX LIBDIR LIBEXECDIR SBINDIR BINDIR
"""
import os
import subprocess
import sys
import tempfile

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def main():
    meson, build, prefix, libdir, libexecdir, sbindir, bindir = sys.argv[1:8]

    def under(root, *parts):
        # Meson's dirs are relative to the prefix unless absolute.
        path = prefix
        for p in parts:
            path = os.path.join(path, p)
        return root + path

    with tempfile.TemporaryDirectory(prefix="ooh-install-") as dest:
        r = subprocess.run([meson, "install", "-C", build, "--no-rebuild", "--quiet",
                            "--destdir", dest], capture_output=True, text=True)
        check(r.returncode == 0, "meson install --destdir succeeds" +
              ("" if r.returncode == 0 else ": " + (r.stderr or r.stdout)[-2000:]))
        if r.returncode != 0:
            return 1
        installed = sorted(os.path.relpath(os.path.join(d, f), dest)
                           for d, _, fs in os.walk(dest) for f in fs)
        print("installed:\n  " + "\n  ".join(installed))

        check(os.access(under(dest, sbindir, "oohd"), os.X_OK), "oohd in SBINDIR")
        check(os.access(under(dest, bindir, "oohctl"), os.X_OK), "oohctl in BINDIR")
        check(any(p.endswith("/libooh.so") or "/libooh.so." in p for p in installed),
              "libooh.so installed")
        check(os.path.exists(under(dest, "include", "ooh", "ooh.h")), "ooh/ooh.h installed")
        check(any(os.path.exists(under(dest, libdir, "pkgconfig", pc))
                  for pc in ("ooh.pc", "libooh.pc")), "libooh's pkg-config file installed")
        for unit in ("oohd.service", "oohd.socket"):
            path = under(dest, "lib", "systemd", "system", unit)
            ok = os.path.exists(path)
            check(ok, unit + " installed")
            if ok and unit == "oohd.service":
                text = open(path).read()
                check(under("", sbindir, "oohd") in text, "oohd.service runs the installed oohd")

        check(not any(p.startswith("usr/lib/criu/") for p in installed),
              "nothing in /usr/lib/criu (a stock criu would refuse our plugin)")
        criu = under(dest, libexecdir, "ooh", "criu")
        plugin_dir = under("", libdir, "ooh", "criu")
        if not os.path.exists(criu):
            print("(CRIU was not built: its install checks are left out)")
        else:
            check(os.path.exists(dest + plugin_dir + "/ooh_plugin.so"),
                  "ooh_plugin.so in " + plugin_dir)
            # CRIU's PLUGINDIR is compiled in as a string constant.
            blob = open(criu, "rb").read()
            check(plugin_dir.encode() + b"\0" in blob or (plugin_dir + "/").encode() in blob,
                  "the installed criu searches %s by default" % plugin_dir)
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
