#!/usr/bin/env bash
# CPS benchmark (issue 3): calls per second through ferroswitch against SIPp's own ceiling.
#
#   tools/cps-bench.sh                         # rates 500 1000 2000 5000 10000, 3 s of calls each
#   tools/cps-bench.sh -r "200 500" -d 5       # other rates, 5 s of calls per rate
#   tools/cps-bench.sh -o a                    # only (a); -o b: only (b); -n: do not build
#   tools/cps-bench.sh -M off                  # (b) without the media plane (SDP passes unchanged)
#   tools/cps-bench.sh -E                      # (b) with the event socket on and a client taking
#                                              #     every event (ferroswitch cli, /event plain ALL)
#
# In one run, for each target rate R it places N = R x D calls (D = -d seconds, default 3) and
# measures:
#  (a) sipp->sipp: SIPp caller (tools/sipp/uac_call_auth.xml) straight at a SIPp callee that
#      plays the switch's 407 challenge and then answers (uas_answer.xml behind
#      sipp-lib.sh challenger): the load generator's ceiling on this machine, doing the same
#      caller work as in (b);
#  (b) sipp->ferroswitch->sipp: the same caller through ferroswitch (407 digest auth, B2BUA)
#      to a SIPp callee registered as 1001 running uas_answer.xml (tools/sipp/run_call.sh).
# It builds ferroswitch in release (flock /tmp/ferroswitch-cargo.lock; CARGO_TARGET_DIR
# defaults to <repo>/target) and starts it itself with a temporary config on free loopback
# ports (log level error), and stops it at the end. Only 127.0.0.1 is used.
#
# Columns: target calls/s; calls placed; achieved = successful calls / (time from the first
# call to the last call's end - mean call length), i.e. the rate at which calls were set up
# and completed; successful and failed calls (failed includes calls that never finished);
# CPU% of the SIPp caller (and of ferroswitch in (b), with its media plane) over the step,
# 100% = one core; in (b) also the switch's CPU time (all threads of both planes, user +
# system) per call placed.
# Numbers come from SIPp's -trace_stat file (-fd 1). Each step is bounded (timeout N/R + 30 s);
# a failing switch shows up as failed calls / "error" rows, never as a hang.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/sipp/sipp-lib.sh"

rates="500 1000 2000 5000 10000" secs=3 only=ab build=1 media=spawn events=0
while getopts "r:d:o:nM:E" o; do
  case $o in
    r) rates=$OPTARG ;; d) secs=$OPTARG ;; o) only=$OPTARG ;; n) build=0 ;; M) media=$OPTARG ;; E) events=1 ;;
    *) sed -n '2,32p' "$0" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || { echo "cps-bench: needs /usr/bin/time (Debian package time)" >&2; exit 2; }
command -v sipp >/dev/null || { echo "cps-bench: sipp not found (ci/install-deps.sh test)" >&2; exit 2; }

work=$(mktemp -d /tmp/cps-bench.XXXXXX)
sw_pid="" uas_pid="" ev_pid=""
cleanup() {
  for p in $ev_pid $uas_pid $sw_pid; do kill -TERM "$p" 2>/dev/null; done
  for p in $ev_pid $uas_pid $sw_pid; do wait "$p" 2>/dev/null; done
  [ "${KEEP:-0}" = 1 ] && echo "cps-bench: work files kept in $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# The switch's ticks with its media plane's (the child process it spawns).
switch_ticks() {
  local t; t=$(cpu_ticks "$1")
  for c in $(pgrep -P "$1"); do t=$((t + $(cpu_ticks "$c"))); done
  echo "$t"
}
hz=$(getconf CLK_TCK)

# summarize STATFILE CALLS UAC_CPU% [SWITCH_CPU%]: one table row from a -trace_stat file.
summarize() {
  python3 - "$@" <<'PY'
import sys
path, calls = sys.argv[1], int(sys.argv[2])
cpu = sys.argv[3:]
try:
    rows = [l.rstrip("\n").split(";") for l in open(path, encoding="latin-1") if l.strip()]
except OSError:
    rows = []
if len(rows) < 2:
    print(f"{calls:>7} {'error: no SIPp statistics':>30}  " + "  ".join(f"{c:>7}" for c in cpu)); sys.exit()
h = {name: i for i, name in enumerate(rows[0])}
last = rows[-1]
def epoch(v): return float(v.split("\t")[-1])
def hms(v):
    hh, mm, ss, us = (int(x) for x in v.split(":"))
    return hh * 3600 + mm * 60 + ss + us / 1e6
ok, failed = int(last[h["SuccessfulCall(C)"]]), int(last[h["FailedCall(C)"]])
window = epoch(last[h["CurrentTime"]]) - epoch(last[h["StartTime"]]) - hms(last[h["CallLength(C)"]])
achieved = ok / window if ok and window > 0 else 0.0
failed += max(0, calls - ok - failed)   # never finished (timed out, killed)
print(f"{calls:>7} {achieved:>12.0f} {ok:>10} {failed:>7}  " + "  ".join(f"{c:>7}" for c in cpu))
PY
}

# run_uac LOGDIR TARGET RATE CALLS [extra sipp args]: the caller with statistics; prints its CPU%.
run_uac() {
  local d=$1 target=$2 rate=$3 calls=$4; shift 4
  (cd "$d" && exec timeout $((calls / rate + 30)) /usr/bin/time -f %P -o cpu.txt sipp -sf "$here/sipp/uac_call_auth.xml" \
     -s 1001 -au 1000 -ap 1234 -i 127.0.0.1 -p "$(free_port)" -mp "$(free_media_port)" -m "$calls" -r "$rate" \
     -l $((rate * 4 + 100)) -buff_size 4194304 -timeout "$((calls / rate + 25))s" -nostdin \
     -trace_stat -stf stat.csv -fd 1 "$@" "$target" >caller.out 2>&1)
  local v; v=$(grep -E '^[0-9]+%$' "$d/cpu.txt" 2>/dev/null | tail -n 1)
  echo "${v:-?}"   # ? = SIPp was stopped by the step's timeout
}

header() { printf '%-28s %6s %7s %12s %10s %7s  %s\n' path target calls achieved/s successful failed "$1"; }

echo "cps-bench: $(date -u +%FT%TZ) $(nproc) cores, $(sipp -v 2>&1 | grep -o 'SIPp v[^ ]*'), $secs s of calls per rate"

if [[ $only == *a* ]]; then
  echo; header "caller-CPU"
  challenger "$here/sipp/uas_answer.xml" >"$work/challenge_answer.xml"
  for r in $rates; do
    calls=$((r * secs)) d="$work/a-$r"; mkdir -p "$d"
    port=$(free_port)
    (cd "$d" && exec timeout $((calls / r + 40)) sipp -sf "$work/challenge_answer.xml" -i 127.0.0.1 -p "$port" \
       -mp "$(free_media_port)" -m "$calls" -buff_size 4194304 -timeout "$((calls / r + 35))s" -nostdin >callee.out 2>&1) &
    uas_pid=$!
    sleep 0.3
    cpu=$(run_uac "$d" "127.0.0.1:$port" "$r" "$calls")
    printf '%-28s %6s ' "sipp->sipp" "$r"; summarize "$d/stat.csv" "$calls" "$cpu"
    for _ in $(seq 1 20); do kill -0 "$uas_pid" 2>/dev/null || break; sleep 0.5; done
    kill -TERM "$uas_pid" 2>/dev/null; wait "$uas_pid" 2>/dev/null; uas_pid=""
  done
fi

if [[ $only == *b* ]]; then
  echo
  bin="${CARGO_TARGET_DIR:-$repo/target}/release/ferroswitch"
  if [ "$build" = 1 ]; then
    echo "cps-bench: building ferroswitch (release)..."
    (cd "$repo" && flock /tmp/ferroswitch-cargo.lock env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}" \
       cargo build --release --bin ferroswitch -q) || { echo "cps-bench: release build failed" >&2; exit 1; }
  fi
  [ -x "$bin" ] || { echo "cps-bench: no $bin (build it, or drop -n)" >&2; exit 1; }
  mkdir -p "$work/switch"
  cat >"$work/switch/ferroswitch.toml" <<TOML
[sip]
udp = ["127.0.0.1:0"]
tcp = ["127.0.0.1:0"]
[storage]
dir = "$work/switch/var"
[management]
http_listen = ""
[esl]
listen = "$( [ "$events" = 1 ] && echo "127.0.0.1:$(free_port)" )"
password = "cps-bench"
[ng]
listen = ""
[media]
mode = "$media"
[log]
level = "error"
TOML
  "$bin" --config "$work/switch/ferroswitch.toml" >"$work/switch/stdout" 2>"$work/switch/stderr" &
  sw_pid=$!
  sw=""
  for _ in $(seq 1 100); do
    sw=$(sed -n 's/^ferroswitch: listening sip\/udp //p' "$work/switch/stdout" | head -1)
    [ -n "$sw" ] && break
    kill -0 "$sw_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$sw" ]; then
    echo "cps-bench: ferroswitch did not start:"; cat "$work/switch/stderr" >&2; exit 1
  fi
  echo "cps-bench: ferroswitch pid $sw_pid on udp $sw"
  if [ "$events" = 1 ]; then
    esl=$(sed -n 's/^ferroswitch: listening esl //p' "$work/switch/stdout" | head -1)
    # A client taking every event for the whole run (its output thrown away); its input
    # is a fifo this script holds open, so it ends with the script.
    mkfifo "$work/events.in"
    "$bin" cli -H "${esl%:*}" -P "${esl##*:}" -p cps-bench <"$work/events.in" >/dev/null 2>&1 &
    ev_pid=$!
    exec 7>"$work/events.in"
    echo "/event plain ALL" >&7
    echo "cps-bench: an event socket client on $esl takes every event"
  fi
  header "caller-CPU switch-CPU switch-CPU/call"
  for r in $rates; do
    calls=$((r * secs)) d="$work/b-$r"; mkdir -p "$d"
    if ! kill -0 "$sw_pid" 2>/dev/null; then
      printf '%-28s %6s %7s %s\n' "sipp->ferroswitch->sipp" "$r" "$calls" "error: ferroswitch is not running"; continue
    fi
    s0=$(switch_ticks "$sw_pid") t0=$(date +%s.%N)
    # run_call.sh registers the callee as 1001 and runs it; the caller gets the statistics flags.
    "$here/sipp/run_call.sh" -q -m "$calls" -r "$r" -t 30 -l "$d" "$sw" uac_call_auth.xml uas_answer.xml -- \
      -l $((r * 4 + 100)) -buff_size 4194304 -trace_stat -stf stat.csv -fd 1 >"$d/run_call.out" 2>&1
    rc=$?
    s1=$(switch_ticks "$sw_pid") t1=$(date +%s.%N)
    swcpu=$(python3 -c "print(f'{100*($s1-$s0)/$hz/max(0.001,$t1-$t0):.0f}%')")
    # The switch's CPU time (all its threads, user + system) per call placed.
    swper=$(python3 -c "print(f'{1e6*($s1-$s0)/$hz/$calls:.0f}us')")
    printf '%-28s %6s ' "sipp->ferroswitch->sipp" "$r"
    if [ "$rc" = 3 ]; then
      printf '%7s %s\n' "$calls" "error: REGISTER of the callee failed"
    else
      summarize "$d/stat.csv" "$calls" "-" "$swcpu" "$swper"
    fi
  done
fi
