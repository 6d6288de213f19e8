# Helpers the benchmark scripts share (source it): waiting for a server to come up,
# asking an NG server on 127.0.0.1:$ng_port for a pong, stopping the relay under test, and
# rtpengine's command line.

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

# stop_relay: stops $relay_pid (TERM, KILL after 5 s) and clears it.
stop_relay() {
  [ -n "${relay_pid:-}" ] || return 0
  kill -TERM "$relay_pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$relay_pid" 2>/dev/null; wait "$relay_pid" 2>/dev/null
  relay_pid=""
}

# rtpengine_cmd INTERFACE NG_ADDR PIDFILE: sets rtpengine_cmd to rtpengine's userspace
# relay (no kernel module: --table=-1), one thread, media ports 16384-32767 unless
# $port_min/$port_max say otherwise, NG on NG_ADDR.
rtpengine_cmd() {
  rtpengine_cmd=(rtpengine --config-file=none --table=-1 --interface="$1" --listen-ng="$2"
    --port-min="${port_min:-16384}" --port-max="${port_max:-32767}" --foreground --log-stderr
    --log-level=3 --num-threads=1 --pidfile="$3")
}
