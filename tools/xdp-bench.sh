#!/usr/bin/env bash
# The relay over a veth pair (issue 13): ferroswitch's media plane with the af_xdp backend,
# with io_uring and with epoll, rtpengine's userspace relay (Debian rtpengine-daemon, NG
# on the near address) and the bare recvmmsg/sendmmsg forwarder, one at a time on CPU 1,
# fed by rtpload from a network namespace on the far end of the veth, pinned to CPU 0.
#
#   tools/xdp-bench.sh                      # 500 and 1000 sessions (50,000 and 100,000 packets/s), 5 s each
#   tools/xdp-bench.sh -s "500" -d 10 -t "af_xdp io_uring"
#   tools/xdp-bench.sh -m 6000              # then the most sessions each relays at < 0.01 % missed (3 s probes, up to 6000)
#   tools/xdp-bench.sh -n                   # do not build
#   (tools/media-bench.sh -x ARGS runs this script with ARGS.)
#
# The near end's receive work runs on the relay's core: threaded NAPI
# (/sys/class/net/IF/threaded; GRO on), its NAPI threads pinned to CPU 1 beside the relay at
# SCHED_FIFO (the XDP program and the copy into the UMEM run there), and RPS to CPU 1 for
# the kernel paths' receive (veth hands them frames through netif_rx, in the sender's
# softirq otherwise). Each step reports the relay process's own
# CPU per packet (cpu_us_per_pkt), CPU 1's whole busy time per packet (core_us_per_pkt:
# the relay, its NAPI thread, softirq and the far end's receive that the relay's sends run),
# and every CPU's busy time less the load tool's own (all_us_per_pkt).
# Needs root (a namespace and a veth, XDP); installs ethtool (and rtpengine-daemon for that
# target) with apt-get if missing; everything it makes is removed at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/bench-lib.sh"
steps="500 1000" secs=5 targets="af_xdp io_uring epoll rtpengine forwarder" build=1 max=0
while getopts "s:d:t:m:n" o; do
  case $o in
    s) steps=$OPTARG ;; d) secs=$OPTARG ;; t) targets=$OPTARG ;; m) max=$OPTARG ;; n) build=0 ;;
    *) sed -n '2,21p' "$0" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "xdp-bench: needs root (a network namespace, a veth pair, XDP)" >&2; exit 2; }
want=(ethtool)
[[ " $targets " != *" rtpengine "* ]] || want+=(rtpengine-daemon)
bench_install xdp-bench "${want[@]}"
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
ethtool -K "$near" gro on >/dev/null && echo 1 >"/sys/class/net/$near/threaded" \
  || echo "xdp-bench: no threaded NAPI on $near: its receive work runs wherever the sender is" >&2
# The kernel paths take the veth's frames in the sender's softirq (netif_rx), not in NAPI:
# RPS moves that work to CPU 1 too, so that every target's receive work is on its core.
echo 2 >"/sys/class/net/$near/queues/rx-0/rps_cpus" || echo "xdp-bench: no RPS on $near" >&2

# pin_napi: moves the near end's NAPI threads (made when NAPI is enabled) to CPU 1, at
# SCHED_FIFO 50: they preempt the relay as softirq would, so the veth's 256-frame ring
# never waits for the relay's time slice to end.
pin_napi() {
  local pid comm
  while read -r pid comm; do
    [[ $comm == napi/$near-* ]] && taskset -pc 1 "$pid" >/dev/null && chrt -f -p 50 "$pid"
  done < <(ps -eo pid=,comm=)
}
ip -n "$ns" addr add "10.80.$k.2/24" dev "$far"; ip -n "$ns" link set "$far" up; ip -n "$ns" link set lo up

# switches: "RELAY NAPI", the context switches so far of the relay's threads and of
# the near end's NAPI threads (each a sleep and a wake-up: the cost a busy core avoids).
switches() {
  local r=0 n=0 pid comm
  r=$(cat /proc/"$relay_pid"/task/*/status 2>/dev/null | awk '/_ctxt_switches/ { s += $2 } END { print s + 0 }')
  while read -r pid comm; do
    [[ $comm == napi/$near-* ]] && n=$((n + $(awk '/_ctxt_switches/ { s += $2 } END { print s + 0 }' /proc/"$pid"/status)))
  done < <(ps -eo pid=,comm=)
  echo "$r $n"
}

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
rtp_port_min = 16384
rtp_port_max = 32767
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
      port_min=16384 port_max=32767 rtpengine_cmd "10.80.$k.1" "10.80.$k.1:22222" "$work/rtpengine.pid"
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

# step TARGET SESSIONS SECONDS: one run; prints rtpload's RESULT line.
step() {
  local t=$1 n=$2 secs=$3 line
  if ! start "$t" "$n"; then
    echo "RESULT target=$t sessions=$n error=start $(tail -2 "$work/$t.log" | tr '\n =' '___')"
    [ -n "$relay_pid" ] && kill "$relay_pid" 2>/dev/null; relay_pid=""
    return
  fi
  pin_napi
  local c0; c0=$(switches)
  line=$(timeout $((secs + 60)) ip netns exec "$ns" nice -n -20 "$bin/rtpload" "${args[@]}" -n "$n" -d "$secs" \
    --relay-pid "$relay_pid" --relay-cpu 1 --cpu 0 --tool-ip "10.80.$k.2" --label "$t" 2>"$work/rtpload.err" | grep '^RESULT')
  local c1; c1=$(switches)
  [ -n "$line" ] && line="$line relay_switches_per_s=$(( (${c1% *} - ${c0% *}) / secs )) napi_switches_per_s=$(( (${c1#* } - ${c0#* }) / secs ))"
  stop_relay
  [ -n "$line" ] || line="RESULT target=$t sessions=$n error=$(tail -1 "$work/rtpload.err" | tr ' =' '__')"
  echo "$line"
}

# probe TARGET SESSIONS (for max_search): a 3 s step's missed_pct (100 on errors) and tool_cpu_pct.
probe() {
  local l m c; l=$(step "$1" "$2" 3)
  echo "$l" >&2
  m=$(grep -oE 'missed_pct=[0-9.]+' <<<"$l" | cut -d= -f2); c=$(grep -oE 'tool_cpu_pct=[0-9.]+' <<<"$l" | cut -d= -f2)
  echo "${m:-100} ${c:-0}"
}

for t in $targets; do
  lo=0 hi=0
  for n in $steps; do
    line=$(step "$t" "$n" "$secs")
    echo "$line"
    m=$(grep -oE 'missed_pct=[0-9.]+' <<<"$line" | cut -d= -f2)
    if [ -n "$m" ] && below_001 "$m"; then [ "$n" -gt "$lo" ] && lo=$n; elif [ "$hi" = 0 ] || [ "$n" -lt "$hi" ]; then hi=$n; fi
  done
  if [ "$max" -gt 0 ]; then
    read -r lo hi tool_lo tool_hi < <(max_search "$t" "$lo" "$hi" "$max")
    echo "MAX target=$t sessions_ok=$lo pps_ok=$((lo * 100)) sessions_failed=$hi tool_cpu_ok=$tool_lo tool_cpu_failed=$tool_hi"
  fi
done
