#!/usr/bin/env bash
# Entry point of the OMNeT++ image (docker/omnetpp.Dockerfile): runs one ini config of
# ini/omnetpp.ini in Cmdenv against the agent server and writes .sca/.vec to the results volume.
#
#   malcolm-omnetpp [CONFIG [AGENT_ENDPOINT]] [opp_run options...]
#   docker run --rm -e MALCOLM_AGENT=tcp://agent-server:5555 malcolm/omnetpp Hetero
#
# Arguments win over the environment:
#   MALCOLM_CONFIG_NAME     ini config (default Hetero)
#   MALCOLM_AGENT           agent ZeroMQ endpoint (default tcp://agent-server:5555); "-" runs
#                           without an agent, with the ini's local fallback policy
#   MALCOLM_FALLBACK        local policy to continue with if the agent becomes unreachable
#                           (default empty: strict, the run stops with an error)
#   MALCOLM_RUNS            run filter, as opp_run -r (default 0)
#   MALCOLM_SEED_SET        seed set of the runs; default "replica": ${repetition} plus an
#                           offset from the hostname, so compose replicas of one config do
#                           not repeat each other; "ini" keeps the ini's seed-set =
#                           ${repetition}; or a number
#   MALCOLM_SIM_TIME_LIMIT  e.g. 5ms (default: the ini's)
#   MALCOLM_ENV_ID          env id announced to the agent (default omnetpp-<hostname>)
#   MALCOLM_RESULT_DIR      results go to $MALCOLM_RESULT_DIR/<config>-<env id>/ (default
#                           /data/results/omnetpp)
#   MALCOLM_OPP_ARGS        more opp_run options (split on spaces)
# The exit status is opp_run's: non-zero when a run fails (an unreachable agent included).
set -euo pipefail
home="${MALCOLM_OMNETPP_HOME:-/opt/malcolm}"
lib="${MALCOLM_OMNETPP_LIB:-$home/lib/libmalcolm_omnetpp.so}"
opp_run="${OMNETPP_ROOT:-/opt/omnetpp}/bin/opp_run"

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"
  echo "Configs: $(sed -n 's/^\[\([A-Za-z0-9_-]*\)\]$/\1/p' "$home/ini/omnetpp.ini" | grep -vx General | tr '\n' ' ')"
  exit 0
fi
config="${1:-${MALCOLM_CONFIG_NAME:-Hetero}}"
agent="${2:-${MALCOLM_AGENT:-tcp://agent-server:5555}}"
shift $(( $# >= 2 ? 2 : $# ))

host="$(hostname)"
env_id="${MALCOLM_ENV_ID:-omnetpp-$host}"
result_dir="${MALCOLM_RESULT_DIR:-/data/results/omnetpp}/$config-$env_id"
mkdir -p "$result_dir"

args=(-u Cmdenv -l "$lib" -n "$home/ned" -c "$config" -r "${MALCOLM_RUNS:-0}"
  "--result-dir=$result_dir" "--**.coordinator.envId=\"$env_id\"")
if [ "$agent" != "-" ]; then
  args+=("--**.coordinator.agentEndpoint=\"$agent\"" "--**.coordinator.fallbackPolicy=\"${MALCOLM_FALLBACK:-}\"")
else
  args+=("--**.coordinator.agentEndpoint=\"\"")
fi
seed_set="${MALCOLM_SEED_SET:-replica}"
case "$seed_set" in
  ini) ;;
  # An offset from the cksum of the hostname (compose gives each replica its own): stable for
  # a container, different between replicas; the ini's ${repetition} stays in, so the runs of
  # one container differ and the variants of one repetition keep common random numbers.
  replica) seed_set="\${repetition}+$(( $(printf '%s' "$host" | cksum | cut -d' ' -f1) % 1000000 ))"
           args+=("--seed-set=$seed_set") ;;
  *[!0-9]*|'') echo "malcolm-omnetpp: MALCOLM_SEED_SET must be 'replica', 'ini' or a number, not '$seed_set'" >&2; exit 2 ;;
  *) args+=("--seed-set=$seed_set") ;;
esac
[ -z "${MALCOLM_SIM_TIME_LIMIT:-}" ] || args+=("--sim-time-limit=$MALCOLM_SIM_TIME_LIMIT")
if [ -n "${MALCOLM_OPP_ARGS:-}" ]; then
  read -r -a extra <<<"$MALCOLM_OPP_ARGS"
  args+=("${extra[@]}")
fi

echo "malcolm-omnetpp: config $config, agent $agent, env id $env_id, runs ${MALCOLM_RUNS:-0}, seed set $seed_set, results $result_dir"
# The ini's relative paths (traces/, ../proto/testdata) are relative to its directory.
cd "$home/ini"
exec "$opp_run" "${args[@]}" "$@" omnetpp.ini
