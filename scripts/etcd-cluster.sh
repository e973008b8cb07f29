#!/usr/bin/env bash
# A throwaway etcd cluster on loopback ports, for kv-etcd's tests, the etcd
# conformance run (`cargo xtask etcd`) and benchmarks.
#
#   scripts/etcd-cluster.sh install          install Debian's etcd-server if `etcd` is missing
#   scripts/etcd-cluster.sh start [DIR]      start the members (data, logs and pids in DIR,
#                                            a new temp dir by default); prints DIR, then
#                                            the client endpoints as host:port,host:port,..
#   scripts/etcd-cluster.sh stop DIR         SIGTERM every member, then remove DIR
#   scripts/etcd-cluster.sh kill DIR N       SIGKILL member N (1-based)
#   scripts/etcd-cluster.sh restart DIR N    start member N again on its data
#   scripts/etcd-cluster.sh endpoints DIR    the client endpoints
#
# Environment: KV_ETCD_MEMBERS (default 3), KV_ETCD_MAX_TXN_OPS (default 2048,
# what kv needs for Deno's 1000 mutations per commit), KV_ETCD_BASE_PORT (default:
# a free random port; member N listens for clients on BASE+2(N-1) and for
# peers on BASE+2(N-1)+1).
set -euo pipefail

die() {
    echo "etcd-cluster: $*" >&2
    exit 1
}

install_etcd() {
    if command -v etcd >/dev/null 2>&1; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "etcd is not installed and apt-get is missing"
    echo "etcd-cluster: installing Debian's etcd-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq etcd-server >&2
    command -v etcd >/dev/null 2>&1 || die "etcd-server installed, but no etcd on PATH"
}

# Free means no socket at all uses the port, listening or connected.
port_free() {
    ! ss -Hatn "sport = :$1" 2>/dev/null | grep -q .
}

pick_base_port() {
    local members=$1 tries base ok i
    for tries in $(seq 1 50); do
        # Below Linux's ephemeral range (32768+), so that no outgoing
        # connection takes a port between this check and etcd's bind.
        base=$((20000 + (RANDOM % 600) * 20))
        ok=1
        for i in $(seq 0 $((2 * members - 1))); do
            port_free $((base + i)) || ok=0
        done
        if [ "$ok" = 1 ]; then
            echo "$base"
            return 0
        fi
    done
    die "no free loopback ports found"
}

# Starts member N of the cluster described in DIR/cluster.env.
start_member() {
    local dir=$1 n=$2
    # shellcheck disable=SC1091
    . "$dir/cluster.env"
    local client=$((BASE + 2 * (n - 1))) peer=$((BASE + 2 * (n - 1) + 1))
    local state=new
    if [ -d "$dir/m$n/member" ]; then
        state=existing
    fi
    # setsid: the member outlives this script and ignores the caller's
    # terminal signals; it is stopped through its pid file.
    setsid etcd \
        --name "m$n" \
        --data-dir "$dir/m$n" \
        --listen-client-urls "http://127.0.0.1:$client" \
        --advertise-client-urls "http://127.0.0.1:$client" \
        --listen-peer-urls "http://127.0.0.1:$peer" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
        --initial-cluster "$CLUSTER" \
        --initial-cluster-token "kv-etcd-$BASE" \
        --initial-cluster-state "$state" \
        --max-txn-ops "$MAX_TXN_OPS" \
        --logger zap --log-level warn \
        </dev/null >>"$dir/m$n.log" 2>&1 &
    echo $! >"$dir/m$n.pid"
}

healthy() {
    curl -fsS --max-time 1 "http://$1/health" 2>/dev/null | grep -q '"health":"true"'
}

wait_healthy() {
    local dir=$1 deadline=$((SECONDS + 30)) ep all
    while :; do
        all=1
        for ep in $(endpoints "$dir" | tr ',' ' '); do
            healthy "$ep" || all=0
        done
        [ "$all" = 1 ] && return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$dir"/m*.log >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

endpoints() {
    local dir=$1
    [ -f "$dir/cluster.env" ] || die "$dir holds no cluster"
    # shellcheck disable=SC1091
    . "$dir/cluster.env"
    local n out=""
    for n in $(seq 1 "$MEMBERS"); do
        out="$out${out:+,}127.0.0.1:$((BASE + 2 * (n - 1)))"
    done
    echo "$out"
}

start() {
    install_etcd
    local dir=${1:-}
    if [ -z "$dir" ]; then
        dir=$(mktemp -d -t kv-etcd.XXXXXX)
    fi
    mkdir -p "$dir"
    local members=${KV_ETCD_MEMBERS:-3} base=${KV_ETCD_BASE_PORT:-}
    [ -n "$base" ] || base=$(pick_base_port "$members")
    local cluster="" n
    for n in $(seq 1 "$members"); do
        cluster="$cluster${cluster:+,}m$n=http://127.0.0.1:$((base + 2 * (n - 1) + 1))"
    done
    cat >"$dir/cluster.env" <<EOF
MEMBERS=$members
BASE=$base
CLUSTER=$cluster
MAX_TXN_OPS=${KV_ETCD_MAX_TXN_OPS:-2048}
EOF
    for n in $(seq 1 "$members"); do
        start_member "$dir" "$n"
    done
    if ! wait_healthy "$dir"; then
        stop "$dir"
        die "the cluster did not become healthy within 30 s"
    fi
    echo "$dir"
    endpoints "$dir"
}

pid_of() {
    local f="$1/m$2.pid"
    [ -f "$f" ] && cat "$f"
}

kill_member() {
    local dir=$1 n=$2 pid
    pid=$(pid_of "$dir" "$n") || die "no pid file for member $n in $dir"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    rm -f "$dir/m$n.pid"
}

stop() {
    local dir=$1 f pid
    [ -f "$dir/cluster.env" ] || die "$dir holds no cluster"
    for f in "$dir"/m*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        kill -TERM "$pid" 2>/dev/null || true
    done
    for f in "$dir"/m*.pid; do
        [ -e "$f" ] || continue
        pid=$(cat "$f")
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}

case "${1:-}" in
install) install_etcd ;;
start) start "${2:-}" ;;
stop) stop "${2:?usage: stop DIR}" ;;
kill) kill_member "${2:?usage: kill DIR N}" "${3:?usage: kill DIR N}" ;;
restart)
    start_member "${2:?usage: restart DIR N}" "${3:?usage: restart DIR N}"
    ;;
endpoints) endpoints "${2:?usage: endpoints DIR}" ;;
*)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac
