#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Prints the kernel build directory to build the module against: the running
# kernel's, else the newest Debian linux-headers-*-amd64; nothing if none.
for d in "/lib/modules/$(uname -r)/build" $(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V -r); do
    if [ -f "$d/Makefile" ] && [ -f "$d/Module.symvers" ]; then
        echo "$d"
        exit 0
    fi
done
