#!/usr/bin/env bash
# NG session set-up side by side (issue 6): ferroswitch's NG server and rtpengine's, one
# after the other in one run, driven by the same ng-setup-bench (offer -> answer -> delete
# per call, CLIENTS clients in parallel, one request out each, over THREADS threads).
#   tools/ng-setup-bench.sh [-c CLIENTS] [-t THREADS] [-n CALLS_PER_CLIENT] [-r ROUNDS] [-B]
#     -c  clients (default 64)             -t  client threads sharing them (default 4)
#     -n  calls per client and round (default 500)
#     -r  rounds per server (default 3)    -B  do not build (use the release binaries there)
# It installs rtpengine-daemon with apt-get if missing (userspace only: --table=-1) and
# builds ferroswitch and ng-setup-bench in release (flock /tmp/ferroswitch-cargo.lock;
# CARGO_TARGET_DIR defaults to <repo>/target). Each server runs on CPU 1 (ferroswitch:
# every thread of the switch and of its media plane, [media] cores = [1]; rtpengine:
# --num-threads=1 under taskset), the clients on CPU 0, both at nice -20 (and this
# session's autogroup raised, restored at the end). rtpengine runs with --delete-delay=0
# so a deleted call frees its ports at once. Prints each round's RESULT line and, last,
# the median round of each and their ratio. Everything started is stopped at the end.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/bench-lib.sh"
clients=64 threads=4 calls=500 rounds=3 build=1
while getopts "c:t:n:r:B" o; do
  case $o in
    c) clients=$OPTARG ;; t) threads=$OPTARG ;; n) calls=$OPTARG ;; r) rounds=$OPTARG ;; B) build=0 ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
done
[ "$(nproc --all)" -ge 2 ] || { echo "ng-setup-bench: needs 2 CPUs (server on 1, clients on 0)" >&2; exit 2; }
if ! command -v rtpengine >/dev/null; then
  echo "ng-setup-bench: installing with apt-get: rtpengine-daemon" >&2
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  exec 9>/tmp/ferroswitch-apt.lock; flock 9
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends rtpengine-daemon >&2 \
    || { echo "ng-setup-bench: could not install rtpengine-daemon" >&2; exit 1; }
  exec 9>&-
fi
target=${CARGO_TARGET_DIR:-$repo/target}
bin=$target/release
if [ "$build" = 1 ]; then
  (cd "$repo" && flock /tmp/ferroswitch-cargo.lock cargo build --release -q -p ferroswitch-control-plane -p rtpload --bins) \
    || { echo "ng-setup-bench: build failed" >&2; exit 1; }
fi
work=$(mktemp -d /tmp/ng-setup-bench.XXXXXX)
server_pid=""
autogroup_nice=$(grep -oE -- '-?[0-9]+$' "/proc/$$/autogroup" 2>/dev/null)
[ -n "$autogroup_nice" ] && echo -20 >"/proc/$$/autogroup" 2>/dev/null
stop_server() {
  [ -n "$server_pid" ] || return 0
  kill -TERM "$server_pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=""
}
cleanup() {
  stop_server
  [ -n "$autogroup_nice" ] && echo "$autogroup_nice" >"/proc/$$/autogroup" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ng_port=12223

cat >"$work/sw.toml" <<EOF
[sip]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
[storage]
dir = "$work/var"
[management]
http_listen = "127.0.0.1:0"
[esl]
listen = ""
[log]
level = "warn"
[media]
cores = [1]
[ng]
listen = "127.0.0.1:$ng_port"
EOF

start_server() {
  case $1 in
    ferroswitch)
      nice -n -20 "$bin/ferroswitch" --config "$work/sw.toml" >"$work/ferroswitch.out" 2>"$work/ferroswitch.err" &
      server_pid=$!
      wait_for 10 grep -q "listening ng" "$work/ferroswitch.out" && wait_for 10 ng_ping \
        || { echo "ferroswitch did not answer NG: $(tail -3 "$work/ferroswitch.err")" >&2; return 1; }
      # The switch and the media plane it started, every thread, on CPU 1.
      taskset -a -cp 1 "$server_pid" >/dev/null
      for p in $(pgrep -P "$server_pid"); do taskset -a -cp 1 "$p" >/dev/null; done ;;
    rtpengine)
      nice -n -20 taskset -c 1 rtpengine --config-file=none --table=-1 --interface=127.0.0.1 \
        --listen-ng=127.0.0.1:$ng_port --port-min=16384 --port-max=32767 --delete-delay=0 --foreground \
        --log-stderr --log-level=3 --num-threads=1 >"$work/rtpengine.log" 2>&1 &
      server_pid=$!
      wait_for 10 ng_ping || { echo "rtpengine did not answer NG: $(tail -3 "$work/rtpengine.log")" >&2; return 1; }
      ;;
  esac
}

declare -A median
for server in ferroswitch rtpengine; do
  start_server "$server" || exit 1
  rates=()
  for round in $(seq "$rounds"); do
    line=$(timeout 300 nice -n -20 taskset -c 0 "$bin/ng-setup-bench" --ng 127.0.0.1:$ng_port --clients "$clients" \
      --threads "$threads" --calls "$calls" --label "$server" | grep '^RESULT') || { echo "ng-setup-bench: $server round $round failed" >&2; exit 1; }
    echo "$line round=$round"
    rates+=("$(sed -E 's/.*sessions_per_s=([0-9]+).*/\1/' <<<"$line")")
  done
  stop_server
  median[$server]=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(( (${#rates[@]} + 1) / 2 ))p")
done
ratio=$(python3 -c "print(f'{${median[ferroswitch]} / max(${median[rtpengine]}, 1):.2f}')")
echo "MEDIAN ferroswitch=${median[ferroswitch]} rtpengine=${median[rtpengine]} sessions/s ratio=$ratio clients=$clients threads=$threads sessions=$((clients * calls)) per round"
