#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# criu for zdtm (zdtm.py --criu-bin): zdtm runs CRIU inside a pid namespace
# of its own (zdtm_ct), and oohd's protocol names processes by pid, so each
# pid namespace gets its own oohd, started here on first use and ended with
# the namespace. Then runs the patched criu.
#
# Environment: OOH_ZDTM_CRIU (the patched criu), OOH_ZDTM_OOHD (oohd),
# OOH_ZDTM_DIR (sockets, pid files and logs).
set -u

# A namespace's inode number is reused after it dies: its init's start time
# tells instances apart.
ns=$(stat -L -c %i /proc/self/ns/pid)-$(sed 's/.*) //' /proc/1/stat | cut -d' ' -f20)
sock=$OOH_ZDTM_DIR/oohd-$ns.sock
if [ ! -S "$sock" ]; then
    (
        flock 9
        if [ ! -S "$sock" ]; then
            setsid "$OOH_ZDTM_OOHD" --socket "$sock" --foreground \
                < /dev/null >> "$OOH_ZDTM_DIR/oohd-$ns.log" 2>&1 &
            echo $! > "$OOH_ZDTM_DIR/oohd-$ns.pid"
            for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
        fi
    ) 9> "$OOH_ZDTM_DIR/oohd-$ns.lock"
fi
export OOH_SOCKET=$sock
exec "$OOH_ZDTM_CRIU" "$@"
