#!/usr/bin/env bash
# Runs a SIPp caller against ferroswitch with a SIPp callee registered as 1001.
#
#   tools/sipp/run_call.sh [options] SWITCH_UDP_ADDR CALLER [CALLEE|none] [-- extra caller args]
#
#   tools/sipp/run_call.sh -m 200 -r 20 127.0.0.1:5060 uac_call_auth.xml uas_answer.xml
#   tools/sipp/run_call.sh -m 5 -r 5 127.0.0.1:5060 uac_call_cancel.xml uas_cancelled.xml
#   tools/sipp/run_call.sh -m 5 -r 5 -s 1019 127.0.0.1:5060 uac_call_unavailable.xml none
#
# CALLER/CALLEE are scenario files (a bare name is looked up in tools/sipp/). Steps:
#  1. picks a free loopback port P (or -p P) and registers 1001 (password 1234) from it with
#     register.xml, so the switch's binding for 1001 is 127.0.0.1:P (skipped for CALLEE=none);
#  2. starts the callee scenario on that same port P in the background (-m N: it ends after N
#     calls);
#  3. runs the caller as 1000 (-au 1000 -ap 1234) to -s CALLED (default 1001), -m N -r R;
#  4. gives the callee a few seconds to finish, then stops it (by its pid) if it has not, and
#     removes the 1001 binding again (unregister.xml, Expires: 0 from the same port).
# Exit status: the caller's SIPp exit code (0 = all N calls passed), or 2 for a usage error,
# 3 if the registration failed. With -S (strict) a failed callee fails the run too (4).
# Everything is bounded: each SIPp runs under timeout(1); the whole run takes at most about
# N/R + 60 s. Logs (SIPp stdout, -trace_err, -trace_stat if asked) stay in -l DIR (default: a
# temporary directory, removed on success and kept and printed on failure).
# Options: -m N (calls, default 10)  -r R (calls/s, default 10)  -s CALLED (default 1001)
#          -p PORT (callee port)  -l DIR (keep logs there; SIPp runs in it, so files a
#          scenario plays go there)  -t SECS (extra time allowed, default 30)
#          -S (strict: callee must pass too)  -q (quiet: no SIPp screens on failure)
#          -e ARG (an extra argument for the callee's SIPp, e.g. -e -rtp_echo; repeatable)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/sipp-lib.sh"

calls=10 rate=10 called=1001 port="" logdir="" extra_time=30 strict=0 quiet=0 callee_extra=()
while getopts "m:r:s:p:l:t:e:Sq" o; do
  case $o in
    m) calls=$OPTARG ;; r) rate=$OPTARG ;; s) called=$OPTARG ;; p) port=$OPTARG ;;
    l) logdir=$OPTARG ;; t) extra_time=$OPTARG ;; S) strict=1 ;; q) quiet=1 ;;
    e) callee_extra+=("$OPTARG") ;;
    *) sed -n '2,30p' "$0" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 2 ] || { sed -n '2,30p' "$0" >&2; exit 2; }
switch=$1 caller=$2 callee=${3:-none}
shift 2; [ $# -gt 0 ] && [ "$1" != "--" ] && shift
[ "${1:-}" = "--" ] && shift
caller_extra=("$@")

resolve() { if [ -f "$1" ]; then (cd "$(dirname "$1")" && echo "$PWD/$(basename "$1")"); elif [ -f "$here/$1" ]; then echo "$here/$1"; else echo "run_call.sh: no scenario $1" >&2; exit 2; fi; }
caller=$(resolve "$caller") || exit 2
[ "$callee" != none ] && { callee=$(resolve "$callee") || exit 2; }

keep=1
if [ -z "$logdir" ]; then logdir=$(mktemp -d /tmp/run_call.XXXXXX); keep=0; fi
mkdir -p "$logdir"
callee_pid="" registered=0
stop_callee() {
  if [ -n "$callee_pid" ] && kill -0 "$callee_pid" 2>/dev/null; then
    kill -TERM "$callee_pid" 2>/dev/null; sleep 0.5; kill -KILL "$callee_pid" 2>/dev/null
  fi
  [ -n "$callee_pid" ] && wait "$callee_pid" 2>/dev/null
  callee_pid=""
}
cleanup() {
  stop_callee
  # Remove our binding so later runs (from other ports) do not find a stale contact for 1001.
  if [ "$registered" = 1 ]; then
    registered=0
    (cd "$logdir" 2>/dev/null && timeout 15 sipp -sf "$here/unregister.xml" -s 1001 -au 1001 -ap 1234 -m 1 -p "$port" \
       "${common[@]}" -timeout 10s -timeout_error "$switch" >unregister.out 2>&1) ||
      echo "run_call.sh: warning: could not remove the binding 127.0.0.1:$port of 1001" >&2
  fi
  [ "$keep" = 0 ] && [ "${rc:-1}" = 0 ] && rm -rf "$logdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 4 MiB socket buffers, as the switch uses: SIPp's default (the kernel's 208 KiB) overflows
# in bursts of a few thousand calls per second.
common=(-i 127.0.0.1 -nostdin -trace_err -buff_size 4194304)
duration=$(( (calls + rate - 1) / rate ))
budget=$(( duration + extra_time ))

if [ "$callee" != none ]; then
  [ -n "$port" ] || port=$(free_port)
  # 1. REGISTER 1001 from 127.0.0.1:$port (digest 401 -> 200).
  if ! (cd "$logdir" && timeout 30 sipp -sf "$here/register.xml" -s 1001 -au 1001 -ap 1234 -m 1 -p "$port" \
        "${common[@]}" -timeout 20s -timeout_error "$switch" >register.out 2>&1); then
    echo "run_call.sh: REGISTER of 1001 from 127.0.0.1:$port to $switch failed" >&2
    [ "$quiet" = 1 ] || tail -n 25 "$logdir/register.out" >&2
    echo "run_call.sh: logs kept in $logdir" >&2
    exit 3
  fi
  registered=1
  # 2. The callee on the registered port, in the background.
  (cd "$logdir" && exec timeout $((budget + 10)) sipp -sf "$callee" -p "$port" -mp "$(free_media_port)" -m "$calls" \
      "${common[@]}" -timeout "$((budget + 5))s" -timeout_error "${callee_extra[@]}" >callee.out 2>&1) &
  callee_pid=$!
  # The caller starts once the callee's socket is bound: a fixed sleep lost the race under
  # a loaded CI (the switch's INVITE to 1001 met a closed port, and the call failed).
  for _ in $(seq 1 100); do
    ss -Huan "sport = :$port" 2>/dev/null | grep -q . && break
    kill -0 "$callee_pid" 2>/dev/null || break
    sleep 0.1
  done
fi

# 3. The caller.
(cd "$logdir" && exec timeout "$budget" sipp -sf "$caller" -s "$called" -au 1000 -ap 1234 -m "$calls" -r "$rate" \
    -p "$(free_port)" -mp "$(free_media_port)" "${common[@]}" -timeout "$((budget - 2))s" -timeout_error \
    "${caller_extra[@]}" "$switch" >caller.out 2>&1)
rc=$?

# 4. The callee has -m N: it ends by itself once it has seen N calls (plus its timewait).
callee_rc=none
if [ -n "$callee_pid" ]; then
  for _ in $(seq 1 20); do kill -0 "$callee_pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$callee_pid" 2>/dev/null; then
    stop_callee; callee_rc=stopped
  else
    wait "$callee_pid"; callee_rc=$?; callee_pid=""
  fi
fi

stat() { grep -E "^ +$2 " "$1" 2>/dev/null | tail -1 | awk -F'|' '{gsub(/ /,"",$3); print $3}'; }
echo "run_call.sh: caller $(basename "$caller") -> $switch: exit $rc (successful $(stat "$logdir/caller.out" 'Successful call'), failed $(stat "$logdir/caller.out" 'Failed call')); callee $( [ "$callee" = none ] && echo none || echo "$(basename "$callee") exit $callee_rc")"
if [ "$strict" = 1 ] && [ "$rc" = 0 ] && [ "$callee_rc" != none ] && [ "$callee_rc" != 0 ]; then rc=4; fi
if [ "$rc" != 0 ]; then
  if [ "$quiet" = 0 ]; then
    for f in "$logdir"/caller.out "$logdir"/callee.out; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 40 "$f" >&2; }; done
    for f in "$logdir"/*errors.log; do [ -f "$f" ] && { echo "== $f" >&2; head -n 40 "$f" >&2; }; done
  fi
  echo "run_call.sh: logs kept in $logdir" >&2
fi
exit "$rc"
