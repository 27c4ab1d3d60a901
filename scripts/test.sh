#!/usr/bin/env bash
# The project's test command (README): sets up, then runs every test suite.
#   scripts/test.sh            # everything
# Each part prints what it runs; a failure stops the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

echo "== Rust workspace tests (release profile, shared with the main job)"
cargo test --release --workspace
