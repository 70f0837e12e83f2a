# SPDX-License-Identifier: Apache-2.0
# Two "hosts" on this machine for migration tests and benchmarks, sourced by
# bash scripts. Three network namespaces joined by a bridge:
#   $P-lan  the network and its client: bridge, 10.77.0.254/24
#   $P-src  the source host, 10.77.0.1/24, the service address on its lo
#   $P-dst  the destination host, 10.77.0.2/24, with its own PID and mount
#           namespaces (a process there, $dst_init, is their pid 1), so a
#           restored tree gets its own pids as on another machine
# The service address 10.77.0.10 is routed from the lan to whichever host
# holds it (a route in the lan), as a floating address would be.
# Nothing changes in the machine's own network namespace.
#
#   hosts_up PREFIX     sets src_exec, dst_exec, lan_exec (command prefixes,
#                       words) and dst_init; returns non-zero with a reason
#   hosts_down          removes it all (also safe after a partial hosts_up)

src_addr=10.77.0.1 dst_addr=10.77.0.2 lan_addr=10.77.0.254 service_addr=10.77.0.10
hosts_prefix= dst_init=

hosts_up() {
    hosts_prefix=$1
    local p=$1 h
    for h in lan src dst; do
        ip netns add "$p-$h" || { echo "can't create network namespace $p-$h"; return 1; }
        ip -n "$p-$h" link set lo up
    done
    ip -n "$p-lan" link add br0 type bridge &&
        ip -n "$p-lan" addr add "$lan_addr/24" dev br0 &&
        ip -n "$p-lan" link set br0 up || { echo "can't create a bridge"; return 1; }
    for h in src dst; do
        ip -n "$p-lan" link add "$h" type veth peer name eth0 netns "$p-$h" &&
            ip -n "$p-lan" link set "$h" master br0 &&
            ip -n "$p-lan" link set "$h" up &&
            ip -n "$p-$h" link set eth0 up || { echo "can't create a veth pair"; return 1; }
    done
    ip -n "$p-src" addr add "$src_addr/24" dev eth0
    ip -n "$p-dst" addr add "$dst_addr/24" dev eth0
    ip -n "$p-src" addr add "$service_addr/32" dev lo
    ip -n "$p-lan" route add "$service_addr/32" via "$src_addr"

    # The destination's pid 1; nsenter's mount namespace gets its /proc.
    nsenter --net="/run/netns/$p-dst" unshare --pid --fork --mount --mount-proc \
        sleep infinity < /dev/null > /dev/null 2>&1 &
    local u=$! i
    for i in $(seq 100); do
        dst_init=$(cat "/proc/$u/task/$u/children" 2>/dev/null | awk '{ print $1 }')
        [ -n "$dst_init" ] && break
        sleep 0.02
    done
    [ -n "$dst_init" ] || { echo "can't start the destination's PID namespace"; return 1; }
    src_exec="nsenter --net=/run/netns/$p-src"
    lan_exec="nsenter --net=/run/netns/$p-lan"
    dst_exec="nsenter -t $dst_init -n -m -p"
}

hosts_down() {
    local p=$hosts_prefix h
    [ -n "$dst_init" ] && kill -9 "$dst_init" 2> /dev/null
    dst_init=
    [ -n "$p" ] || return 0
    for h in lan src dst; do
        ip netns del "$p-$h" 2> /dev/null
    done
    return 0
}
