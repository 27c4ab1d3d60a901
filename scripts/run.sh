#!/usr/bin/env bash
# The main job (README): sets up, builds, then trains Malcolm-Strict on the embedded `hetero`
# scenario over ZeroMQ, evaluates it against the baselines on held-out seeds and writes a
# results folder (CSV, summary.md, PNG plots, checkpoint). Extra arguments go to
# `agent-server train` (see `agent-server train --help`), e.g. `--minutes 3` or `--quick`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --release -p agent-server
exec target/release/agent-server train "$@"
