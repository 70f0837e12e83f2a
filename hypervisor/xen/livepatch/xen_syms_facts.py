#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reads out of one Xen build's xen-syms what the Shadow-PML payload needs
to know about that build, and checks it; prints them as -D flags.

- do_hvm_op's address, size and first bytes: the payload replaces it and
  replays its first instructions (hook.S), so they must be those.
- How is_hvm_vcpu(current) is compiled: every guest copy in do_hvm_op
  first loads the current vCPU from struct cpu_info at the top of the
  stack, then its domain, then tests one bit of the domain; the payload
  makes the same test. The offsets are taken from that code and must be
  the same at every site, and a set bit must lead to copy_from_user_hvm.

usage: xen_syms_facts.py XEN_SYMS
"""

import re
import subprocess
import sys

# The instructions hook.S replays: push %r13; push %r12; push %rbp.
PROLOGUE = bytes([0x41, 0x55, 0x41, 0x54, 0x55])


def fail(msg):
    print("xen_syms_facts: " + msg, file=sys.stderr)
    sys.exit(1)


def symbol(syms, name):
    out = subprocess.run(["nm", "-S", syms], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3] == name and parts[2] in "Tt":
            return int(parts[0], 16), int(parts[1], 16)
    fail("%s: no function %s" % (syms, name))


def disassemble(syms, start, size):
    out = subprocess.run(["objdump", "-d", "-w", "--no-show-raw-insn",
                          "--start-address=%#x" % start, "--stop-address=%#x" % (start + size),
                          syms], capture_output=True, text=True, check=True).stdout
    insns = []
    for line in out.splitlines():
        m = re.match(r"\s*([0-9a-f]+):\s+(.*)$", line)
        if m:
            insns.append((int(m.group(1), 16), m.group(2).strip()))
    return insns


def first_bytes(syms, start, n):
    out = subprocess.run(["objdump", "-s", "--start-address=%#x" % start,
                          "--stop-address=%#x" % (start + n), syms],
                         capture_output=True, text=True, check=True).stdout
    data = b""
    for line in out.splitlines():
        m = re.match(r"\s*[0-9a-f]{8,16} ((?:[0-9a-f]{2,8} ?){1,4})", line)
        if m:
            data += bytes.fromhex(m.group(1).replace(" ", ""))
    return data[:n]


def hvm_test(insns):
    """(stack mask, cpu_info.current_vcpu, vcpu.domain, byte, mask) at every
    site where the whole walk from the stack is compiled in one piece."""
    sites = set()
    for i in range(len(insns) - 3):
        a, b, c, d = (x[1] for x in insns[i:i + 4])
        m1 = re.match(r"or\s+\$(0x[0-9a-f]+),%(\w+)$", a)
        m2 = re.match(r"mov\s+(-?0x[0-9a-f]+)\(%(\w+)\),%(\w+)$", b)
        m3 = re.match(r"mov\s+(0x[0-9a-f]+)\(%(\w+)\),%(\w+)$", c)
        m4 = re.match(r"testb\s+\$(0x[0-9a-f]+),(0x[0-9a-f]+)\(%(\w+)\)$", d)
        if not (m1 and m2 and m3 and m4):
            continue
        if not (m1.group(2) == m2.group(2) and m2.group(3) == m3.group(2) and
                m3.group(3) == m4.group(3)):
            continue
        sites.add((int(m1.group(1), 16), int(m2.group(1), 16), int(m3.group(1), 16),
                   int(m4.group(2), 16), int(m4.group(1), 16)))
    return sites


def hvm_when_set(insns, byte, mask):
    """Does a set bit mean HVM? Every test of that bit that is followed by
    a guest copy must say so: 'testb; je <else>; ...; copy_from_user_hvm'
    or 'testb; jne <else>; ...; copy_from_guest_pv'. Returns the count of
    such sites, or -1 if one says the opposite."""
    test = "testb  $%#x,%#x(" % (mask, byte)
    agree = 0
    for i in range(len(insns) - 5):
        if not insns[i][1].replace(" ", "").startswith(test.replace(" ", "")):
            continue
        jump = insns[i + 1][1].split()[0]
        call = next((t[1] for t in insns[i + 2:i + 7] if t[1].startswith("call")), "")
        if "<copy_from_user_hvm>" in call or "<copy_to_user_hvm>" in call:
            hvm_path_on_fallthrough = True
        elif "<copy_from_guest_pv>" in call or "<copy_to_guest_pv>" in call:
            hvm_path_on_fallthrough = False
        else:
            continue
        # je jumps away on a clear bit: the fall-through runs with it set.
        set_falls_through = jump == "je"
        if jump not in ("je", "jne"):
            continue
        if hvm_path_on_fallthrough != set_falls_through:
            return -1
        agree += 1
    return agree


def main():
    if len(sys.argv) != 2:
        fail("usage: xen_syms_facts.py XEN_SYMS")
    syms = sys.argv[1]
    addr, size = symbol(syms, "do_hvm_op")
    head = first_bytes(syms, addr, len(PROLOGUE))
    if head != PROLOGUE:
        fail("do_hvm_op starts with %s, hook.S replays %s: this Xen build needs another hook"
             % (head.hex(" "), PROLOGUE.hex(" ")))
    insns = disassemble(syms, addr, size)
    sites = hvm_test(insns)
    if len(sites) != 1:
        fail("is_hvm_vcpu(current) in do_hvm_op: expected one layout, found %s" % sorted(sites))
    stack_mask, cur, dom, byte, mask = sites.pop()
    agree = hvm_when_set(insns, byte, mask)
    if agree <= 0:
        fail("is_hvm_vcpu(current) in do_hvm_op: the bit does not select the HVM guest copy"
             " (%s)" % ("contradicted" if agree < 0 else "no guest copy after a test"))
    if stack_mask + 1 & stack_mask or mask == 0:
        fail("unexpected stack mask %#x or bit mask %#x" % (stack_mask, mask))
    flags = {
        "OOH_OLD_SIZE": "%#x" % size,
        "OOH_PROLOGUE_LEN": str(len(PROLOGUE)),
        "OOH_PROLOGUE_BYTES": ",".join("%#x" % b for b in PROLOGUE),
        "OOH_STACK_MASK": "%#xUL" % stack_mask,
        "OOH_CPUINFO_CURRENT_VCPU": "(%d)" % cur,
        "OOH_VCPU_DOMAIN": "%#x" % dom,
        "OOH_DOMAIN_HVM_BYTE": "%#x" % byte,
        "OOH_DOMAIN_HVM_MASK": "%#x" % mask,
    }
    print(" ".join("-D%s=%s" % kv for kv in flags.items()))


if __name__ == "__main__":
    main()
