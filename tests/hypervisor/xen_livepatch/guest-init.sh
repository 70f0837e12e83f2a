#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# /init of the Xen boot test's dom0 (Debian's kernel, busybox): loads the
# Shadow-PML payload into the Xen it runs on and back out, asking Xen for
# the sub-op before, during and after. Every line the host checks starts
# with OOH-XL; the host decides pass or fail (xen_livepatch_test.py).
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

step() { echo "OOH-XL $*"; }
now() { /bin/ooh-spml-probe now; }
ms() { echo $((($2 - $1) / 1000000)); }
# Apply and revert stop every CPU within xen-livepatch's fixed 30 ms; under
# TCG on a busy host a vCPU can miss that (-EBUSY, nothing changed): try
# again, and say how many tries it took.
act() { # VERB NAME OUTPUT
    tries=0
    while :; do
        tries=$((tries + 1))
        /bin/xen-livepatch "$1" "$2" > "$3" 2>&1 && return 0
        grep -q 'Device or resource busy' "$3" && [ $tries -lt 5 ] || return 1
    done
}

insmod /lib/modules/xen-privcmd.ko && insmod /lib/modules/xenfs.ko &&
    mount -t xenfs xenfs /proc/xen || step "error: xen modules or xenfs"
step "buildid $(od -An -tx1 -v /sys/hypervisor/properties/buildid | tr -d ' \n')"
step "xensyms $(grep -m 1 ' do_hvm_op$' /proc/xen/xensyms)"
step "before $(/bin/ooh-spml-probe query | tr '\n' ' ')"

t0=$(now)
/bin/xen-livepatch upload ooh-spml /ooh-spml.livepatch > /tmp/up 2>&1; up=$?
act apply ooh-spml /tmp/ap; ap=$?; ap_tries=$tries
t1=$(now)
step "upload rc=$up $(tr '\n' ' ' < /tmp/up)"
step "apply rc=$ap tries=$ap_tries $(tr '\n' ' ' < /tmp/ap)"
step "list $(/bin/xen-livepatch list 2>&1 | grep ooh-spml)"
step "applied $(/bin/ooh-spml-probe query | tr '\n' ' ')"

t2=$(now)
act revert ooh-spml /tmp/rv; rv=$?; rv_tries=$tries
/bin/xen-livepatch unload ooh-spml > /tmp/ul 2>&1; ul=$?
t3=$(now)
step "revert rc=$rv unload rc=$ul tries=$rv_tries $(cat /tmp/rv /tmp/ul | tr '\n' ' ')"
step "list-after $(/bin/xen-livepatch list 2>&1 | grep -c ooh-spml)"
step "after $(/bin/ooh-spml-probe query | tr '\n' ' ')"
step "times upload+apply_ms=$(ms "$t0" "$t1") revert+unload_ms=$(ms "$t2" "$t3") apply_tries=$ap_tries revert_tries=$rv_tries"

# The operator's path: a payload for another build is refused with the
# reason before Xen sees it; the right one loads and unloads.
/bin/ooh-xen-livepatch load /other-build.livepatch > /tmp/mm 2>&1; mm=$?
step "mismatch rc=$mm $(tr '\n' ' ' < /tmp/mm)"
/bin/xen-livepatch upload ooh-spml-raw /other-build.livepatch > /tmp/raw 2>&1; raw=$?
step "raw-mismatch rc=$raw $(tr '\n' ' ' < /tmp/raw)"
/bin/ooh-xen-livepatch load /ooh-spml.livepatch > /tmp/ol 2>&1; ol=$?
step "tool-load rc=$ol $(tr '\n' ' ' < /tmp/ol)"
step "tool-status $(/bin/ooh-xen-livepatch status 2>&1 | grep ooh-spml)"
step "tool-applied $(/bin/ooh-spml-probe query | tr '\n' ' ')"
/bin/ooh-xen-livepatch unload > /tmp/ou 2>&1; ou=$?
step "tool-unload rc=$ou $(tr '\n' ' ' < /tmp/ou)"
step "tool-after $(/bin/ooh-spml-probe query | tr '\n' ' ')"
step done
sync
reboot -f
