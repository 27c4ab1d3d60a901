#!/usr/bin/env bash
# Runs one scenario of ini/omnetpp.ini in Cmdenv against a running agent server.
#   scripts/omnetpp-run.sh CONFIG [AGENT_ENDPOINT] [opp_run options...]
#   scripts/omnetpp-run.sh Hetero tcp://127.0.0.1:5555 -r 0
#   scripts/omnetpp-run.sh Incast - -r '$pfc==false'     # "-": no agent, local policy
#   scripts/omnetpp-run.sh Hetero "embedded:--policy malcolm-strict --mode eval --checkpoint C" -r 0
# "embedded:<serve flags>" loads the agent into the simulation's process (MALCOLM_AGENT_LIBRARY,
# default target/release/libmalcolm_agent.so: cargo build --release -p malcolm-agent-ffi).
# With an endpoint the run is strict: an unreachable agent stops it with an error, unless
# MALCOLM_FALLBACK names a local policy to continue with (e.g. MALCOLM_FALLBACK=power-of-2).
# Without one, the ini's fallback policy (power-of-2) places the tasks and says so.
# Results go to results/omnetpp (.sca/.vec), or to MALCOLM_RESULT_DIR.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/omnetpp-env.sh
source "$root/scripts/omnetpp-env.sh"
if [ $# -lt 1 ]; then
  sed -n '2,11p' "$0"
  exit 2
fi
config="$1"
endpoint="${2:--}"
shift $(( $# >= 2 ? 2 : 1 ))
malcolm_find_omnetpp || exit 1
malcolm_build_modules "$root"

args=(-u Cmdenv -l "$MALCOLM_OMNETPP_LIB" -n "$root/ned" -c "$config")
if [[ "$endpoint" == embedded:* ]] && [ -z "${MALCOLM_AGENT_LIBRARY:-}" ]; then
  export MALCOLM_AGENT_LIBRARY="$root/target/release/libmalcolm_agent.so"
fi
if [ "$endpoint" != "-" ] && [ -n "$endpoint" ]; then
  args+=("--**.coordinator.agentEndpoint=\"$endpoint\"" "--**.coordinator.fallbackPolicy=\"${MALCOLM_FALLBACK:-}\"")
fi
if [ -n "${MALCOLM_RESULT_DIR:-}" ]; then
  mkdir -p "$MALCOLM_RESULT_DIR"
  args+=("--result-dir=$MALCOLM_RESULT_DIR")
fi
cd "$root/ini"
exec "$OPP_RUN" "${args[@]}" "$@" omnetpp.ini
