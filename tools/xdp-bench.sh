#!/usr/bin/env bash
# The relay over a veth pair (issue 13): ferroswitch's media plane with the af_xdp backend,
# with io_uring and with epoll, rtpengine's userspace relay (Debian rtpengine-daemon, NG
# on the near address) and the bare recvmmsg/sendmmsg forwarder, one at a time on CPU 1,
# fed by rtpload from a network namespace on the far end of the veth, pinned to CPU 0.
#
#   tools/xdp-bench.sh                      # 500 and 1000 sessions (50,000 and 100,000 packets/s), 5 s each
#   tools/xdp-bench.sh -s "500" -d 10 -t "af_xdp io_uring"
#   tools/xdp-bench.sh -n                   # do not build
#
# Each step counts everything the machine did for the relay, not only the relay's own
# threads: the busy time of every CPU (/proc/stat: user, nice, system, irq, softirq) over
# the measured window minus the load tool's own CPU time, divided by the packets relayed
# (all_us_per_pkt; the veth's receive work runs in softirq, on whichever CPU); beside it
# the relay process's own CPU per packet (cpu_us_per_pkt, as media-bench.sh reports).
# Needs root (a namespace and a veth, XDP); everything it makes is removed at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/bench-lib.sh"
steps="500 1000" secs=5 targets="af_xdp io_uring epoll rtpengine forwarder" build=1
while getopts "s:d:t:n" o; do
  case $o in
    s) steps=$OPTARG ;; d) secs=$OPTARG ;; t) targets=$OPTARG ;; n) build=0 ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "xdp-bench: needs root (a network namespace, a veth pair, XDP)" >&2; exit 2; }
target_dir=${CARGO_TARGET_DIR:-$repo/target}
if [ "$build" = 1 ]; then
  echo "xdp-bench: building rtpload and ferroswitch (release)" >&2
  (cd "$repo" && "$repo/ci/install-deps.sh" build && cargo build --release -q -p rtpload -p ferroswitch-control-plane) || exit 1
fi
bin=$target_dir/release
k=$(( $$ % 200 + 20 ))
ns=fsxbench$$ near=fxbA$k far=fxbB$k
work=$(mktemp -d /tmp/xdp-bench.XXXXXX)
relay_pid=""
cleanup() {
  stop_relay
  ip link del "$near" 2>/dev/null; ip netns del "$ns" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] && echo "xdp-bench: work files kept in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns" && ip link add "$near" type veth peer name "$far" netns "$ns" || exit 1
ip addr add "10.80.$k.1/24" dev "$near"; ip link set "$near" up
ip -n "$ns" addr add "10.80.$k.2/24" dev "$far"; ip -n "$ns" link set "$far" up; ip -n "$ns" link set lo up

# start TARGET SESSIONS: the relay on CPU 1; sets relay_pid and args (rtpload's target).
start() {
  local t=$1 n=$2 log=$work/$1.log
  case $t in
    af_xdp|io_uring|epoll)
      local cfg=$work/$t.toml
      cat >"$cfg" <<TOML
[storage]
dir = "$work"
[media]
cores = [1]
mode = "attach"
socket = "$work/media.sock"
rtp_port_min = 20000
rtp_port_max = 29999
orphan_exit_secs = 600
rtp_ip = "10.80.$k.1"
[log]
level = "error"
TOML
      case $t in
        af_xdp) sed -i "s/^rtp_ip = .*/&\nbackend = \"af_xdp\"\nxdp_interface = \"$near\"\nxdp_mode = \"native\"\nxdp_bind = \"copy\"/" "$cfg" ;;
        *) sed -i "s/^rtp_ip = .*/&\nbackend = \"$t\"/" "$cfg" ;;
      esac
      rm -f "$work/media.sock"
      nice -n -20 "$bin/ferroswitch" media --config "$cfg" >"$log" 2>&1 &
      relay_pid=$!
      for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
      grep -q listening "$log" || return 1
      taskset -a -cp 1 "$relay_pid" >/dev/null
      args=(--ferroswitch "$work/media.sock" --media-ip "10.80.$k.1") ;;
    rtpengine)
      command -v rtpengine >/dev/null || { echo "xdp-bench: rtpengine-daemon is not installed (tools/media-bench.sh installs it)" >&2; return 1; }
      port_min=20000 port_max=29999 rtpengine_cmd "10.80.$k.1" "10.80.$k.1:22222" "$work/rtpengine.pid"
      nice -n -20 taskset -c 1 "${rtpengine_cmd[@]}" >"$log" 2>&1 &
      relay_pid=$!
      sleep 1
      args=(--ng "10.80.$k.1:22222") ;;
    forwarder)
      nice -n -20 taskset -c 1 "$bin/bare-forwarder" --listen "10.80.$k.1:20000" --pairs "$n" --cpu 1 >"$log" 2>&1 &
      relay_pid=$!
      for _ in $(seq 100); do grep -q ready "$log" && break; sleep 0.1; done
      args=(--forwarder "10.80.$k.1:20000") ;;
    *) echo "xdp-bench: unknown target $t" >&2; return 1 ;;
  esac
}

for t in $targets; do
  for n in $steps; do
    if ! start "$t" "$n"; then
      echo "RESULT target=$t sessions=$n error=start $(tail -2 "$work/$t.log" | tr '\n =' '___')"
      [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null; relay_pid=""
      continue
    fi
    line=$(timeout $((secs + 60)) ip netns exec "$ns" nice -n -20 "$bin/rtpload" "${args[@]}" -n "$n" -d "$secs" \
      --relay-pid "$relay_pid" --cpu 0 --tool-ip "10.80.$k.2" --label "$t" 2>"$work/rtpload.err" | grep '^RESULT')
    stop_relay
    [ -n "$line" ] || line="RESULT target=$t sessions=$n error=$(tail -1 "$work/rtpload.err" | tr ' =' '__')"
    echo "$line"
  done
done
