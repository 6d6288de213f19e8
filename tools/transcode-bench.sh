#!/usr/bin/env bash
# Transcoded calls side by side (issue 12): ferroswitch's media plane vs rtpengine's
# transcoding (Debian rtpengine-daemon, which transcodes through libavcodec), each on one
# pinned core (CPU 1), the load tool (transload) on CPU 0. A call is a PCMU caller and an
# Opus callee (48 kHz, voice-like payloads), 20 ms packets both ways.
#
#   tools/transcode-bench.sh                          # 50 100 150 200 250 calls, 10 s each
#   tools/transcode-bench.sh -s "100 200" -d 5 -t ferroswitch
#   tools/transcode-bench.sh -n                       # do not build
#
# Options: -s CALLS (steps), -d SECONDS per step (default 10), -t TARGETS (ferroswitch
# rtpengine), -n no build. Each step starts a fresh relay on CPU 1 (nice -20), runs
# `transload -n CALLS -d SECONDS --relay-pid PID --cpu 0`, and stops the relay; every
# step's RESULT line (calls, loss_pct, relay_cpu_pct, relay_us_per_call_s) goes to
# ${RESULTS:-/tmp/transcode-bench.results}. It installs rtpengine-daemon with apt-get if
# it is missing, and builds ferroswitch and transload in release.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/bench-lib.sh"

steps="50 100 150 200 250" secs=10 targets="ferroswitch rtpengine" build=1
while getopts "s:d:t:n" o; do
  case $o in
    s) steps=$OPTARG ;; d) secs=$OPTARG ;; t) targets=$OPTARG ;; n) build=0 ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
done
[ "$(nproc --all)" -ge 2 ] || { echo "transcode-bench: needs 2 CPUs (relay on 1, load on 0)" >&2; exit 2; }
if ! command -v rtpengine >/dev/null && [[ " $targets " == *" rtpengine "* ]]; then
  echo "transcode-bench: installing with apt-get: rtpengine-daemon" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  exec 9>/tmp/ferroswitch-apt.lock; flock 9
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends rtpengine-daemon >&2 \
    || { echo "transcode-bench: could not install rtpengine-daemon" >&2; exit 1; }
  exec 9>&-
fi
target_dir=${CARGO_TARGET_DIR:-$repo/target}
if [ "$build" = 1 ]; then
  echo "transcode-bench: building transload and ferroswitch (release)" >&2
  (cd "$repo" && "$repo/ci/install-deps.sh" build && flock /tmp/ferroswitch-cargo.lock env CARGO_TARGET_DIR="$target_dir" \
     cargo build --release -q -p rtpload -p ferroswitch-control-plane) || exit 1
fi
bin=$target_dir/release
for b in transload ferroswitch; do
  [ -x "$bin/$b" ] || { echo "transcode-bench: $bin/$b missing (build first)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/transcode-bench.XXXXXX)
relay_pid=""
cleanup() {
  stop_relay
  [ -s "$work/results.txt" ] && cp "$work/results.txt" "${RESULTS:-/tmp/transcode-bench.results}" \
    && echo "transcode-bench: every step's RESULT line is in ${RESULTS:-/tmp/transcode-bench.results}" >&2
  [ "${KEEP:-0}" = 1 ] && echo "transcode-bench: work files kept in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ng_port=22222 port_min=16384 port_max=32767
cat >"$work/media.toml" <<TOML
[storage]
dir = "$work"
[media]
cores = [1]
mode = "attach"
socket = "$work/media.sock"
rtp_port_min = $port_min
rtp_port_max = $port_max
orphan_exit_secs = 600
[log]
level = "error"
TOML

start_relay() {
  local t=$1 log=$work/$1.log
  case $t in
    ferroswitch)
      rm -f "$work/media.sock"
      nice -n -20 "$bin/ferroswitch" media --config "$work/media.toml" >"$log" 2>&1 &
      relay_pid=$!
      wait_for 10 grep -q "listening" "$log" || { echo "ferroswitch media did not start: $(tail -3 "$log")" >&2; return 1; }
      taskset -a -cp 1 "$relay_pid" >/dev/null
      target_args=(--ferroswitch "$work/media.sock") ;;
    rtpengine)
      rtpengine_cmd 127.0.0.1 "127.0.0.1:$ng_port" "$work/rtpengine.pid"
      nice -n -20 taskset -c 1 "${rtpengine_cmd[@]}" >"$log" 2>&1 &
      relay_pid=$!
      wait_for 10 ng_ping || { echo "rtpengine did not answer NG: $(tail -3 "$log")" >&2; return 1; }
      target_args=(--ng 127.0.0.1:$ng_port) ;;
    *) echo "transcode-bench: unknown target $t" >&2; return 1 ;;
  esac
}

echo "transcode-bench: $(nproc) CPUs, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg); work in $work" >&2
for t in $targets; do
  for n in $steps; do
    if ! start_relay "$t"; then
      line="RESULT target=$t calls=$n error=start"
    else
      line=$(timeout $((secs + 120)) nice -n -20 "$bin/transload" "${target_args[@]}" -n "$n" -d "$secs" \
        --relay-pid "$relay_pid" --cpu 0 2>"$work/transload.err" | grep '^RESULT')
      [ -n "$line" ] || line="RESULT target=$t calls=$n error=$(tail -1 "$work/transload.err" | tr ' =' '__')"
    fi
    stop_relay
    echo "${line}" | tee -a "$work/results.txt"
  done
done
