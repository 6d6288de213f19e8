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

# bench_install NAME PACKAGE...: installs with apt-get (apt-get update first) the Debian
# packages not installed yet, saying which; NAME prefixes its messages. Exits on failure.
bench_install() {
  local name=$1 p missing=(); shift
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "$name: installing with apt-get: ${missing[*]}" >&2
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  exec 9>/tmp/ferroswitch-apt.lock; flock 9
  $sudo apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || { echo "$name: could not install ${missing[*]}" >&2; exit 1; }
  exec 9>&-
}

# below_001 PCT: true if PCT < 0.01 (the loss goal).
below_001() { python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.01 else 1)" "$1"; }

# max_search TARGET LO HI MAX: the most sessions TARGET relays with < 0.01 % missed,
# from LO (known to pass; 0: none) and HI (known to fail; 0: none): up by 1.5x until a
# probe fails (or the load tool itself saturates, or MAX), then halving the gap down to
# 100 sessions. Calls `probe TARGET SESSIONS` (the caller's), which prints
# "MISSED_PCT TOOL_CPU_PCT". Prints "LO HI TOOL_LO TOOL_HI".
max_search() {
  local t=$1 lo=$2 hi=$3 max=$4 n m c tool_lo=- tool_hi=-
  [ "$hi" != 0 ] && [ "$hi" -le "$lo" ] && hi=0
  while [ "$hi" = 0 ]; do
    n=$(( (lo * 3 / 2 + 99) / 100 * 100 )); [ "$n" -lt 100 ] && n=100
    [ "$n" -gt "$max" ] && n=$max
    [ "$n" -le "$lo" ] && break
    read -r m c < <(probe "$t" "$n")
    if below_001 "$m"; then lo=$n tool_lo=$c; else hi=$n tool_hi=$c; fi
    # The tool itself saturated while the relay kept up: the search cannot go higher.
    python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 95 else 1)" "$c" && [ "$hi" = 0 ] && break
  done
  while [ "$hi" != 0 ] && [ $((hi - lo)) -gt 100 ]; do
    n=$(( (lo + hi) / 200 * 100 )); [ "$n" -le "$lo" ] && n=$((lo + 100))
    read -r m c < <(probe "$t" "$n")
    if below_001 "$m"; then lo=$n tool_lo=$c; else hi=$n tool_hi=$c; fi
  done
  echo "$lo $hi $tool_lo $tool_hi"
}
