# Helpers the benchmark scripts share (source it): waiting for a server to come up, and
# asking an NG server on 127.0.0.1:$ng_port for a pong.

# wait_for SECONDS COMMAND...: true once COMMAND succeeds.
wait_for() {
  local t=$1; shift
  for _ in $(seq $((t * 20))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}

# ng_ping: true if the NG server on 127.0.0.1:$ng_port answers a ping.
ng_ping() {
  python3 - "$ng_port" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.3)
s.sendto(b"bench d7:command4:pinge", ("127.0.0.1", int(sys.argv[1])))
sys.exit(0 if b"pong" in s.recv(4096) else 1)
PY
}
