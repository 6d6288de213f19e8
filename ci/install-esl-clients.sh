#!/usr/bin/env bash
# Installs the real ESL clients the event socket's tests drive, unchanged, from their
# registries, under target/esl-clients, saying so first: greenswitch (PyPI) in a
# virtualenv with genesis and the Prometheus FreeSWITCH exporter (PyPI), and modesl (npm). Prints the virtualenv's python, then the node_modules
# directory. Usage: ci/install-esl-clients.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${CARGO_TARGET_DIR:-$PWD/target}/esl-clients
venv=$dir/venv
want="greenswitch==0.0.19 prometheus-freeswitch-exporter==1.0.1 genesis==2026.10.18"
# One installer at a time: parallel test binaries may call this together.
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
if ! "$venv/bin/python" -c "import greenswitch, freeswitch_exporter, genesis" 2>/dev/null; then
  echo "ci/install-esl-clients.sh: installing from PyPI into $venv: $want" >&2
  python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install -q --disable-pip-version-check $want >&2
fi
node=$dir/node
if [ ! -d "$node/node_modules/modesl" ]; then
  command -v npm >/dev/null || { echo "ci/install-esl-clients.sh: npm is missing (Node.js)" >&2; exit 1; }
  echo "ci/install-esl-clients.sh: installing from npm into $node: modesl@1.2.1" >&2
  mkdir -p "$node"
  npm install --silent --no-audit --no-fund --prefix "$node" modesl@1.2.1 >&2
fi
echo "$venv/bin/python"
echo "$node/node_modules"
