#!/usr/bin/env bash
# Floods from a stranger (issue 11): memory (RSS) and CPU of ferroswitch while one SIPp
# source sends unauthenticated INVITEs (each 407 never acknowledged, so every server
# transaction lives its whole Timer H) or REGISTERs (each 401 kept for Timer J), side by
# side in one run with SIPp itself answering the same flood (the reference: what sending
# the challenges costs a program that keeps almost no state).
#
#   tools/flood-bench.sh                     # INVITE and REGISTER at 1000 4000 8000 per second, 20 s each
#   tools/flood-bench.sh -r "1000" -d 10     # other rates and lengths
#   tools/flood-bench.sh -k invite -n        # one kind; do not build
#
# For each kind and rate: a fresh target (ferroswitch in release, the embedded limits but
# SIP on a free loopback port, no media plane; or SIPp with tools/sipp/flood_uas_<kind>.xml),
# SIPp sends rate x seconds requests from one socket (tools/sipp/flood_<kind>.xml, no
# retransmissions), and the target's VmRSS is read every second. Columns: the target's RSS
# before, its peak during the flood, and 40 s after it ended (every transaction has then
# ended: memory given back or not), in MiB; its CPU (user + system) over the flood, in %
# of one core; and for ferroswitch how many requests got a stateless 503 because
# sip.max_transactions was reached (its log's last power-of-two count: within 2x). Everything started is stopped at the
# end (trap); each step is bounded by timeout.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

rates="1000 4000 8000" secs=20 kinds="invite register" build=1 after=40
while getopts "r:d:k:a:n" o; do
  case $o in
    r) rates=$OPTARG ;; d) secs=$OPTARG ;; k) kinds=$OPTARG ;; a) after=$OPTARG ;; n) build=0 ;;
    *) sed -n '2,22p' "$0" >&2; exit 2 ;;
  esac
done
command -v sipp >/dev/null || { echo "flood-bench: sipp not found (ci/install-deps.sh test)" >&2; exit 2; }
target_dir=${CARGO_TARGET_DIR:-$repo/target}
if [ "$build" = 1 ]; then
  echo "flood-bench: building ferroswitch (release)" >&2
  (cd "$repo" && flock /tmp/ferroswitch-cargo.lock env CARGO_TARGET_DIR="$target_dir" \
     cargo build --release -q -p ferroswitch-control-plane --bin ferroswitch) || exit 1
fi
bin=$target_dir/release/ferroswitch
[ -x "$bin" ] || { echo "flood-bench: $bin missing" >&2; exit 1; }

work=$(mktemp -d /tmp/flood-bench.XXXXXX)
pid=""
stop() { [ -n "$pid" ] && { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }; pid=""; }
trap 'stop; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_mib() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null; }

# start TARGET KIND: starts it on a free port; sets pid and port.
start() {
  port=$(free_port)
  case $1 in
    ferroswitch)
      cat >"$work/sw.toml" <<EOF
[sip]
udp = ["127.0.0.1:$port"]
tcp = []
[storage]
dir = "$work/var"
[management]
http_listen = ""
[esl]
listen = ""
[ng]
listen = ""
[media]
mode = "off"
[log]
level = "warn"
EOF
      rm -rf "$work/var"
      "$bin" --config "$work/sw.toml" >"$work/sw.out" 2>"$work/sw.log" &
      pid=$!
      for _ in $(seq 100); do grep -q "listening sip/udp" "$work/sw.out" 2>/dev/null && break; sleep 0.1; done ;;
    sipp)
      (cd "$work" && exec sipp -sf "$here/sipp/flood_uas_$2.xml" -i 127.0.0.1 -p "$port" -bg -nostdin \
        >/dev/null 2>&1)
      sleep 0.5
      pid=$(pgrep -nf "sipp -sf $here/sipp/flood_uas_$2.xml .* -p $port") ;;
  esac
}

printf '%-9s %-11s %6s  %9s %9s %9s  %7s  %s\n' kind target rate rss_before rss_peak rss_after cpu_pct refused_503
for kind in $kinds; do
  for rate in $rates; do
    for target in ferroswitch sipp; do
      start "$target" "$kind"
      [ -n "$pid" ] || { echo "flood-bench: $target did not start" >&2; continue; }
      sleep 1
      before=$(rss_mib "$pid") peak=$before
      t0=$(cpu_ticks "$pid")
      n=$((rate * secs))
      (cd "$work" && timeout $((secs + 30)) sipp -sf "$here/sipp/flood_$kind.xml" -s 1000 -i 127.0.0.1 \
        -p "$(free_port)" -r "$rate" -m "$n" -l "$n" -nostdin -timeout $((secs + 20))s \
        "127.0.0.1:$port" >/dev/null 2>&1) &
      gen=$!
      while kill -0 "$gen" 2>/dev/null; do
        r=$(rss_mib "$pid"); [ -n "$r" ] && peak=$(python3 -c "print(max($peak, $r))")
        sleep 1
      done
      t1=$(cpu_ticks "$pid")
      cpu=$(python3 -c "print(round(($t1 - $t0) * 100 / $(getconf CLK_TCK) / $secs))")
      sleep "$after"
      rss_after=$(rss_mib "$pid")
      refused=-
      # The switch logs the running count at each power of two: the last is within 2x.
      [ "$target" = ferroswitch ] && refused=$(grep -oE 'refused_total=[0-9]+' "$work/sw.log" | tail -1 | cut -d= -f2)
      refused=${refused:-0}
      printf '%-9s %-11s %6s  %9s %9s %9s  %7s  %s\n' "$kind" "$target" "$rate" "$before" "$peak" "$rss_after" "$cpu" "$refused"
      stop
    done
  done
done
