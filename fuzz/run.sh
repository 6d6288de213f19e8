#!/usr/bin/env bash
# Runs each fuzz target for a bounded time, seeded with the RFC 4475 torture messages.
# Usage: fuzz/run.sh [seconds per target, default 300]. Needs cargo-fuzz and a nightly
# toolchain (cargo install cargo-fuzz). Results: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-300}"
for t in sip_message sip_stream sdp ng; do
  mkdir -p "corpus/$t"
  if [ "$t" = ng ]; then
    printf 'c1 d7:command4:pinge' >corpus/ng/ping
    printf 'c2 d7:command5:offer7:call-id1:x8:from-tag1:y3:sdp3:v=05:flagsl13:trust addressee' >corpus/ng/offer
  elif [ "$t" = sdp ]; then
    # Seeds: the SDP bodies of the torture messages (what follows the blank line).
    for f in ../control-plane/tests/data/rfc4475/*.dat; do
      python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); i=d.find(b"\r\n\r\n"); sys.stdout.buffer.write(d[i+4:] if i>=0 else b"")' "$f" >"corpus/sdp/$(basename "$f")"
    done
  else
    cp ../control-plane/tests/data/rfc4475/*.dat "corpus/$t/"
  fi
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=8192 -rss_limit_mb=2048 2>&1 | tee "/tmp/fuzz-$t.log" | grep -E "^#[0-9]+ +(DONE|pulse)|Done|ERROR|SUMMARY" || true
done
