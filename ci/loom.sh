#!/usr/bin/env bash
# Runs the loom model checks of the shared-memory ring (shared/src/ring.rs, mod
# loom_tests): every interleaving of a producer and a consumer on a 2-slot ring, and of
# the doorbell sleep/wake protocol (a lost wake-up shows as a loom deadlock).
#
# Builds with RUSTFLAGS="--cfg loom" (loom's atomics and cells replace std's) into its
# own target directory, so it does not invalidate the normal build's artifacts:
# $LOOM_TARGET_DIR, default target/loom in the repository. About 35 s from cold on a
# 2-vCPU VM (the build is most of it), a few seconds when built.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--cfg loom"
export CARGO_TARGET_DIR="${LOOM_TARGET_DIR:-$PWD/target/loom}"
cmd=(cargo test -p ferroswitch-shared --release --lib loom)
echo "== loom: RUSTFLAGS=\"$RUSTFLAGS\" CARGO_TARGET_DIR=$CARGO_TARGET_DIR ${cmd[*]}"
"${cmd[@]}"
