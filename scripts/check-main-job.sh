#!/usr/bin/env bash
# Runs the main job in --quick mode and checks that the results folder is complete and well
# formed (CSV headers and rows, PNG signatures, a checkpoint with its metadata).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)/quick"
target/release/agent-server --log info train --quick --out "$out" >"$out.log" 2>&1 || {
  cat "$out.log"; echo "check-main-job: train --quick failed" >&2; exit 1; }
fail() { echo "check-main-job: $*" >&2; exit 1; }
# Per-episode session lines belong at DEBUG: at INFO they would interleave with the progress.
if grep -q 'env connected\|env closed its session' "$out.log"; then
  fail "train logs a line per episode at INFO (session connects/closes)"
fi
for f in summary.md eval.csv summary.csv learning_curve.csv latency_cdf.png learning_curve.png \
         checkpoint.safetensors; do
  [ -s "$out/$f" ] || fail "missing or empty $f"
done
for png in "$out"/*.png; do
  [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$png is not a PNG"
done
head -1 "$out/eval.csv" | grep -q '^label,policy,scenario,seed,.*miss_rate' || fail "eval.csv header"
[ "$(($(wc -l <"$out/eval.csv") - 1))" -ge 12 ] || fail "eval.csv has too few rows"
grep -q 'Malcolm-Strict' "$out/summary.md" || fail "summary.md has no Malcolm-Strict row"
grep -q 'Po2 + FCFS' "$out/summary.md" || fail "summary.md has no Po2 row"
echo "check-main-job: ok ($(($(wc -l <"$out/learning_curve.csv") - 1)) training episodes, $(($(wc -l <"$out/eval.csv") - 1)) eval runs) in $out"
