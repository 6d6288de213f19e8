#!/usr/bin/env bash
# Installs, with apt-get, the Debian packages a ferroswitch command needs, saying
# which ones first. Usage: ci/install-deps.sh build|test|container
#   build: what building the switch needs beyond the Rust toolchain: the codec libraries
#          the media plane links for transcoding (libopus-dev for Opus, libbcg729-dev for
#          G.729), and clang, llvm and libbpf-dev to build the AF_XDP backend's XDP program
#   test:  what build needs, and the real peers the test suite drives: SIPp (sip-tester), sipsak, the
#          baresip softphone (baresip-core), rtpengine's NG client (rtpengine-utils),
#          and the Kamailio SIP proxy (kamailio: its rtpengine module, rtpengine.so, is in
#          the main package), fail2ban (fail2ban-regex checks the shipped filter
#          against the switch's real log lines), prometheus (its promtool checks
#          the /metrics page), and tmux (drives the CLI in a terminal)
#   container: podman (with runc: crun refuses this kind of machine's hybrid cgroups),
#          mmdebstrap (the base image, made locally from the apt sources) and uidmap, for
#          the container test
set -euo pipefail
what="${1:-test}"
case "$what" in
  build) pkgs=(libopus-dev libbcg729-dev clang llvm libbpf-dev) ;;
  test) pkgs=(libopus-dev libbcg729-dev clang llvm libbpf-dev sip-tester sipsak baresip-core rtpengine-utils kamailio fail2ban prometheus tmux) ;;
  container) pkgs=(podman runc mmdebstrap uidmap) ;;
  *) echo "usage: $0 build|test|container" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "ci/install-deps.sh: installing with apt-get: ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "ci/install-deps.sh: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
# One installer at a time: parallel test binaries may call this together.
exec 9>/tmp/ferroswitch-apt.lock
flock 9
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
