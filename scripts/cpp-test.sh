#!/usr/bin/env bash
# Builds and tests the framework-free C++ core of the OMNeT++ side (omnetpp/core) with
# GoogleTest, in omnetpp/build (git-ignored). Idempotent; fast when up to date.
#   scripts/cpp-test.sh
# MALCOLM_AGENT_SERVER_BIN=target/release/agent-server enables the round trip against the
# real agent server (skipped with a message otherwise); target/release/libmalcolm_agent.so (or
# MALCOLM_AGENT_LIBRARY) the embedded agent's tests. Where OMNeT++ is found (OMNETPP_ROOT
# or opp_run on PATH) the same build also compiles the simple modules; otherwise it says so.
set -euo pipefail
cd "$(dirname "$0")/.."
src=omnetpp
build=omnetpp/build
jobs="${MALCOLM_CPP_JOBS:-2}"
mkdir -p "$build"
# (Re)configure: re-detects OMNeT++ when the environment changed; says what it found.
if ! cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build/last-configure.log" 2>&1; then
  cat "$build/last-configure.log"
  exit 1
fi
grep -h 'OMNeT++' "$build/last-configure.log" | sed 's/^-- //' || true
log="$build/last-build.log"
if ! cmake --build "$build" -j "$jobs" >"$log" 2>&1; then
  cat "$log"
  echo "cpp-test: build failed (log: $log)" >&2
  exit 1
fi
# Say what was skipped (OMNeT++ absent) or built, without the progress lines.
grep -E 'warning' "$log" || true
# The round trip against the real agent server runs when its binary is there.
if [ -z "${MALCOLM_AGENT_SERVER_BIN:-}" ] && [ -x target/release/agent-server ]; then
  export MALCOLM_AGENT_SERVER_BIN="$PWD/target/release/agent-server"
fi
echo "agent server for the round-trip test: ${MALCOLM_AGENT_SERVER_BIN:-none (test skipped)}"
# The embedded agent's tests run when its library is there.
if [ -z "${MALCOLM_AGENT_LIBRARY:-}" ] && [ -f target/release/libmalcolm_agent.so ]; then
  export MALCOLM_AGENT_LIBRARY="$PWD/target/release/libmalcolm_agent.so"
fi
echo "embedded agent library: ${MALCOLM_AGENT_LIBRARY:-none (embedded tests skipped)}"
echo "== C++ core tests (ctest in $build)"
ctest --test-dir "$build" --output-on-failure --timeout 120 >"$build/last-ctest.log" 2>&1 && rc=0 || rc=$?
grep -v -E '^ *Start +[0-9]+:|Test +#[0-9]+: .* Passed' "$build/last-ctest.log" || true
exit "$rc"
