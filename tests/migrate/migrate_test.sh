#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `oohctl migrate` between two hosts on this machine (two_hosts.sh: network
# namespaces on a bridge, the destination with its own PID and mount
# namespaces). The service is ooh-sample-workload: 64 MiB of stamped pages,
# 2000 page writes per second, a TCP port on the floating service address.
# A client on the lan connects and asks it to verify its memory before the
# migration; oohctl migrate pre-dumps with --ooh to the destination's page
# server until the dirty set converges, dumps with --tcp-established, moves
# the service address (--switch-command), restores on the destination and
# routes the lan's traffic for the address there (--after-restore).
# Then: the source process is gone, the restored one (same pid, the
# destination's PID namespace) verifies every page it ever wrote, and the
# client's connection, opened before the migration, gets its answer from
# the destination's network namespace.
# With post-copy, the same with --post-copy: the final dump's pages go
# after the restore, fetched by userfaultfd from the stopped source; the
# service verifies once they all arrived (oohctl returns then).
#
# usage: migrate_test.sh OOHCTL CRIU PLUGIN_SO OOHD WORKLOAD [post-copy]
# Exit 77 (skip) without root or without the pieces.
set -uo pipefail
mode=${6:-}
. "$(dirname "$0")/harness.sh"
client_pid=
test_cleanup() { [ -n "$client_pid" ] && kill -9 "$client_pid" 2> /dev/null; }
migrate_test_init mt "$@"
post_copy=()
if [ "$mode" = post-copy ]; then
    post_copy=(--post-copy "$src_addr")
    allow_post_copy
fi
start_oohd

# The service, on the source host, in its own session (CRIU dumps whole
# sessions). setsid does not fork here (not a group leader): $! is its pid.
port=7070
$src_exec setsid "$workload" --mib 64 --rate 2000 --report "$tmp/report" \
    --listen "$service_addr:$port" < /dev/null > "$tmp/workload.log" 2>&1 &
wpid=$!
disown
for _ in $(seq 100); do
    [ "$(readlink "/proc/$wpid/exe")" = "$(readlink -f "$workload")" ] && break
    sleep 0.05
done
[ "$(readlink "/proc/$wpid/exe")" = "$(readlink -f "$workload")" ] || fail "the service did not start"

# The client: asks before; pings every 20 ms through the migration, each
# ping answered before the next (the ones sent while the service is frozen
# wait in TCP and are answered by the restored service); once $tmp/go
# exists, asks again on the same connection. Prints the answers and, per
# network namespace, how many pings it answered.
cat > "$tmp/client.py" <<PY
import os, socket, sys, time
# The service listens once it has stamped all its pages.
for _ in range(200):
    try:
        s = socket.create_connection(("$service_addr", $port), timeout=10)
        break
    except ConnectionRefusedError:
        time.sleep(0.05)
f = s.makefile("rw")
def ask():
    f.write("verify\n"); f.flush()
    return f.readline().strip()
print("before:", ask(), flush=True)
s.settimeout(60)
pongs, n = {}, 0
try:
    while not os.path.exists("$tmp/go"):
        n += 1
        f.write("ping %d\n" % n); f.flush()
        answer = f.readline().split()
        if answer[:2] != ["pong", str(n)]:
            raise OSError("ping %d answered %s" % (n, answer))
        pongs[answer[2]] = pongs.get(answer[2], 0) + 1
        time.sleep(0.02)
    print("pings:", n, " ".join("%s=%d" % kv for kv in pongs.items()), flush=True)
    print("after:", ask(), flush=True)
except OSError as e:
    print("after: error", e, flush=True)
PY
$lan_exec /usr/bin/python3 "$tmp/client.py" > "$tmp/client.out" 2>&1 &
client_pid=$!
for _ in $(seq 400); do grep -q '^before:' "$tmp/client.out" && break; sleep 0.05; done
grep -q '^before: OK' "$tmp/client.out" || fail "the client got no answer before the migration: $(cat "$tmp/client.out")"

# The destination gets the service address before the restore (the
# restored sockets bind to it), the lan's route to it only after: until the
# restored socket exists, the destination would answer the client's
# retransmissions with a reset. Meanwhile they reach the source, which
# drops them (CRIU's network lock, and no longer its address).
give="ip -n $hosts_prefix-src addr del $service_addr/32 dev lo &&
      ip -n $hosts_prefix-dst addr add $service_addr/32 dev lo"
route="ip -n $hosts_prefix-lan route replace $service_addr/32 via $dst_addr"
# 4 rounds + dump + transfer + restore at 30 s each stay under Meson's timeout.
$src_exec "$oohctl" migrate -t "$wpid" --to "$dst_addr" -D "$tmp/src-img" \
    --dest-dir "$tmp/dst-img" --dest-exec "$dst_exec" --criu "$criu" \
    -L "$(dirname "$plugin")" -s "$tmp/oohd.sock" --max-rounds 4 --interval 300 \
    --step-timeout 30 "${post_copy[@]}" --tcp-established --switch-command "$give" --after-restore "$route" \
    > "$tmp/out" 2> "$tmp/err"
rc=$?
cat "$tmp/out" "$tmp/err"
[ "$rc" = 0 ] || fail "oohctl migrate failed (status $rc): $(grep -m1 'oohctl migrate: ' "$tmp/err")"
grep -q "^pre 1 " "$tmp/out" && grep -q "^dump " "$tmp/out" && grep -q "^downtime " "$tmp/out" ||
    fail "oohctl migrate did not report its rounds, dump and downtime"
grep -Eq "^(converged|round limit hit) after [0-9]+ pre-dumps? \(" "$tmp/out" ||
    fail "oohctl migrate did not say how the pre-dumps ended"
grep -q "dirty rate" "$tmp/out" || fail "no dirty rate reported"
if [ "$mode" = post-copy ]; then
    grep -q "^post-copy finished " "$tmp/out" || fail "oohctl migrate did not say when the post-copy finished"
    lazy=$(sed -n 's/^summary .* lazy_pages=\([0-9]*\) .*/\1/p' "$tmp/out")
    # 2000 page writes per second: the last round leaves some to the post-copy.
    [ -n "$lazy" ] && [ "$lazy" -gt 0 ] || fail "no page went by post-copy (lazy_pages='$lazy')"
fi
for _ in $(seq 100); do [ -d "/proc/$wpid" ] || break; sleep 0.05; done
[ -d "/proc/$wpid" ] && fail "the source process $wpid still exists after the migration"
wpid=

# The restored service: same pid, in the destination's PID namespace.
$dst_exec "$workload" --verify "$(sed -n 's/^migrating pid \([0-9]*\) .*/\1/p' "$tmp/out")" \
    --report "$tmp/report" > "$tmp/verify.out" 2>&1 ||
    fail "the restored service failed its check: $(cat "$tmp/verify.out")"
echo "restored service: $(cat "$tmp/verify.out")"

# The connection made before the migration.
touch "$tmp/go"
for _ in $(seq 200); do grep -q '^after:' "$tmp/client.out" && break; sleep 0.05; done
cat "$tmp/client.out"
before_ns=$(sed -n 's/^before: OK .* \(net:.*\)$/\1/p' "$tmp/client.out")
after_ns=$(sed -n 's/^after: OK .* \(net:.*\)$/\1/p' "$tmp/client.out")
dst_ns=$(readlink "/proc/$dst_init/ns/net")
[ -n "$after_ns" ] || fail "the client's connection did not survive the migration: $(grep '^after:' "$tmp/client.out")"
[ "$after_ns" = "$dst_ns" ] && [ "$before_ns" != "$dst_ns" ] ||
    fail "the answer after the migration came from $after_ns, not the destination ($dst_ns)"
# Every ping answered (the client checks each in turn), by both hosts.
pings=$(sed -n 's/^pings: //p' "$tmp/client.out")
[ "$(wc -w <<< "$pings")" = 3 ] && grep -qF " $before_ns=" <<< "$pings" && grep -qF " $dst_ns=" <<< "$pings" ||
    fail "the pings were not answered by the source then the destination: $(grep '^pings:' "$tmp/client.out")"
echo "PASS: migrated with every page verified; the TCP connection moved from $before_ns to $after_ns, every ping answered ($(sed -n 's/^pings: //p' "$tmp/client.out"))"
