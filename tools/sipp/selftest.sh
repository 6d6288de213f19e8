#!/usr/bin/env bash
# Validates every caller/callee scenario pair SIPp <-> SIPp on loopback, with no switch:
# the callee side is the UAS scenario itself, or (for the callers that expect the switch's
# 407) the UAS scenario behind an inserted digest challenge (sipp-lib.sh challenger), which
# also stands in for the switch's 480/404. Each pair runs N calls; both SIPp exit codes must
# be 0, and check_trace.py checks branches/CSeqs/tags/Request-URIs in the -trace_msg logs.
#   tools/sipp/selftest.sh [CALLS]         (default 5 calls per pair at 10 calls/s; ~40 s)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/sipp-lib.sh"
calls=${1:-5}
work=$(mktemp -d /tmp/sipp-selftest.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail=0

# pair NAME UAC_FILE UAS_FILE CHECK_UAS(yes/no) [extra uac args...]
pair() {
  local name=$1 uac=$2 uas=$3 check_uas=$4; shift 4
  local d="$work/$name"; mkdir -p "$d"
  local port; port=$(free_port)
  ( cd "$d" && exec timeout 60 sipp -sf "$uas" -i 127.0.0.1 -p "$port" -mp "$(free_media_port)" -m "$calls" \
      -timeout 45s -timeout_error -nostdin -trace_msg -trace_err >uas.out 2>&1 ) &
  local uas_pid=$!
  sleep 0.3
  ( cd "$d" && exec timeout 60 sipp -sf "$uac" -i 127.0.0.1 -p "$(free_port)" -mp "$(free_media_port)" \
      -m "$calls" -r 10 -timeout 45s -timeout_error -nostdin -trace_msg -trace_err "$@" "127.0.0.1:$port" >uac.out 2>&1 )
  local uac_rc=$?
  wait "$uas_pid"; local uas_rc=$?
  local ok=yes
  python3 "$here/check_trace.py" uac "$d"/*uac*_messages.log >"$d/check.out" 2>&1 || ok=no
  if [ "$check_uas" = yes ]; then python3 "$here/check_trace.py" uas "$d"/*uas*_messages.log >>"$d/check.out" 2>&1 || ok=no; fi
  printf '%-34s uac rc=%s uas rc=%s trace-check=%s | %s\n' "$name" "$uac_rc" "$uas_rc" "$ok" \
    "$(grep -h 'violations' "$d/check.out" | sed 's/check_trace: //' | tr '\n' ' ')"
  if [ "$uac_rc" != 0 ] || [ "$uas_rc" != 0 ] || [ "$ok" != yes ]; then
    fail=1; cat "$d/check.out"; tail -n 30 "$d/uac.out" "$d/uas.out"; cat "$d"/*errors.log 2>/dev/null | head -40
  fi
}

S=$here
challenger "$S/uas_answer.xml" >"$work/sw_uas_answer.xml"
challenger "$S/uas_answer_then_bye.xml" >"$work/sw_uas_answer_then_bye.xml"
challenger "$S/uas_answer_bye_later.xml" >"$work/sw_uas_answer_bye_later.xml"
challenger "$S/uas_busy.xml" >"$work/sw_uas_busy.xml"
challenger "$S/uas_busy.xml" 480 "Temporarily Unavailable" >"$work/sw_480.xml"
challenger "$S/uas_busy.xml" 404 "Not Found" >"$work/sw_404.xml"
challenger "$S/uas_cancelled.xml" >"$work/sw_uas_cancelled.xml"

echo "SIPp $(sipp -v 2>&1 | grep -o 'v[0-9.]*[^ ]*' | head -1): $calls calls per pair"
pair noauth-vs-uas_answer           "$S/uac_call_noauth.xml"       "$S/uas_answer.xml"               no  -s 1001
pair auth-vs-407+uas_answer         "$S/uac_call_auth.xml"         "$work/sw_uas_answer.xml"         no  -s 1001 -au 1000 -ap 1234
pair wait_bye-vs-407+answer_then_bye "$S/uac_call_wait_bye.xml"    "$work/sw_uas_answer_then_bye.xml" yes -s 1001 -au 1000 -ap 1234
pair wait_bye-vs-407+answer_bye_later "$S/uac_call_wait_bye.xml"  "$work/sw_uas_answer_bye_later.xml" yes -s 1001 -au 1000 -ap 1234
pair busy-vs-407+uas_busy           "$S/uac_call_busy.xml"         "$work/sw_uas_busy.xml"           no  -s 1001 -au 1000 -ap 1234
pair unavailable-vs-407+480         "$S/uac_call_unavailable.xml"  "$work/sw_480.xml"                no  -s 1019 -au 1000 -ap 1234
pair notfound-vs-407+404            "$S/uac_call_notfound.xml"     "$work/sw_404.xml"                no  -s 5555 -au 1000 -ap 1234
pair cancel-vs-407+uas_cancelled    "$S/uac_call_cancel.xml"       "$work/sw_uas_cancelled.xml"      no  -s 1001 -au 1000 -ap 1234
[ "$fail" = 0 ] && echo "selftest: all pairs passed" || echo "selftest: FAILED"
exit $fail
