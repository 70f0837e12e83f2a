#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Prints "KDIR RELEASE": the kernel build directory to build the module
# against (the running kernel's, else the newest Debian
# linux-headers-*-amd64) and its release string; nothing if there is none.
for d in "/lib/modules/$(uname -r)/build" $(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V -r); do
    if [ -f "$d/Makefile" ] && [ -f "$d/Module.symvers" ] &&
       [ -f "$d/include/generated/utsrelease.h" ]; then
        release=$(sed -n 's/^#define UTS_RELEASE "\(.*\)"$/\1/p' "$d/include/generated/utsrelease.h")
        echo "$d $release"
        exit 0
    fi
done
