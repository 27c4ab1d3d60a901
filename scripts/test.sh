#!/usr/bin/env bash
# The project's test command (README): sets up, then runs every test suite.
#   scripts/test.sh
# Each part says what it runs; the first failure stops the run with a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh

echo "== Rust workspace tests (release profile, shared with the main job)"
cargo test --release --workspace

echo "== Bridge benchmark, --quick: Step round trip through the bridge beside the raw canned-reply floor"
cargo build --release -p agent-server -p malcolm-agent-ffi
target/release/agent-server --log warn bench bridge --quick

echo "== Python adapter (python/: pytest against live agent-server env processes)"
MALCOLM_AGENT_SERVER_BIN="$PWD/target/release/agent-server" "$MALCOLM_VENV/bin/python" -m pytest -q python/tests

echo "== C++ core (GoogleTest; OMNeT++ modules too where OMNeT++ is found)"
MALCOLM_AGENT_SERVER_BIN="$PWD/target/release/agent-server" bash scripts/cpp-test.sh

if [ -n "${OMNETPP_ROOT:-}" ] || command -v opp_run >/dev/null 2>&1; then
  echo "== OMNeT++ scenario checks (OMNeT++ found)"
  bash scripts/omnetpp-check.sh
else
  echo "== OMNeT++ not found (set OMNETPP_ROOT or put opp_run on PATH): scenario checks skipped"
fi

echo "== Main job smoke test: agent-server train --quick"
bash scripts/check-main-job.sh

echo "== Docker stack: compose validation, hadolint, shellcheck"
bash scripts/check-docker.sh

echo "== Combined run without Docker (agent-server serve + env processes)"
cr_out="$(mktemp -d)/combined"
bash scripts/combined-run.sh --quick --out "$cr_out"

echo "== Experiments, --quick mode: every experiment runs and writes well-formed outputs"
bash scripts/experiments-quick.sh
