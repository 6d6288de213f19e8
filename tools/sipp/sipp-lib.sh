# Shared shell helpers for the SIPp tools (sourced by run_call.sh, selftest.sh, ../cps-bench.sh).

# free_port: a port free for both UDP and TCP on 127.0.0.1 (like tests/common free_port()).
free_port() {
  python3 - <<'PY'
import socket
while True:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
    p = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        t.close(); u.close()
PY
}

# free_media_port: an even port N with N..N+3 free on UDP (SIPp binds -mp and -mp+2 for RTP echo),
# from 40000 up: below that are the switches' own RTP ranges (16384-32767 by default, the
# tests' 20000-31999), and an SDP naming the switch's own range is refused as a loop (488).
free_media_port() {
  python3 - <<'PY'
import socket, random
for _ in range(1000):
    p = random.randrange(40000, 60000, 4)
    socks = []
    try:
        for q in range(p, p + 4):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", q)); socks.append(s)
        print(p); break
    except OSError:
        pass
    finally:
        for s in socks: s.close()
PY
}

# challenger FILE [CODE REASON]: writes to stdout a UAS scenario that plays the switch's digest
# challenge (INVITE -> 100 -> 407 -> ACK) and then continues with the callee scenario FILE, so a
# SIPp caller's 407 path can be exercised against SIPp alone. With CODE/REASON, the callee's
# 486 Busy Here is replaced by that final response (to emulate the switch's 480/404).
challenger() {
  local file=$1 code=${2:-} reason=${3:-}
  awk -v code="$code" -v reason="$reason" '
    { if (code != "" && $0 ~ /SIP\/2\.0 486 Busy Here/) sub(/486 Busy Here/, code " " reason); print }
    /^<scenario / && !done {
      done = 1
      print "  <!-- Inserted by tools/sipp/sipp-lib.sh challenger(): the switch'"'"'s 407 challenge. -->"
      print "  <recv request=\"INVITE\" crlf=\"true\"/>"
      print "  <send><![CDATA["
      print ""
      print "      SIP/2.0 100 Trying"
      print "      [last_Via:]"
      print "      [last_From:]"
      print "      [last_To:]"
      print "      [last_Call-ID:]"
      print "      [last_CSeq:]"
      print "      Content-Length: 0"
      print ""
      print "  ]]></send>"
      print "  <send retrans=\"500\"><![CDATA["
      print ""
      print "      SIP/2.0 407 Proxy Authentication Required"
      print "      [last_Via:]"
      print "      [last_From:]"
      print "      [last_To:];tag=[pid]SIPpTag07[call_number]"
      print "      [last_Call-ID:]"
      print "      [last_CSeq:]"
      print "      Proxy-Authenticate: Digest realm=\"[local_ip]\", nonce=\"[pid]n[call_number]\", algorithm=MD5, qop=\"auth\""
      print "      Content-Length: 0"
      print ""
      print "  ]]></send>"
      print "  <recv request=\"ACK\"/>"
      print "  <!-- End of the inserted challenge; the callee scenario follows. -->"
    }' "$file"
}
