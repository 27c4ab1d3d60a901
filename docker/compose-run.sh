#!/usr/bin/env bash
# One command for a combined run with docker/compose.yaml: starts the agent server and the
# environment replicas, waits until every replica has exited, stops the server with SIGTERM
# (it saves its checkpoint), copies the volumes to the host and reports the replicas' exit
# codes. (`compose up --abort-on-container-exit` would stop the other replicas as soon as the
# first one finishes, hence this script.)
#
#   docker/compose-run.sh [--embedded] [--replicas N] [--timeout-s S] [--no-build]
#   docker/compose-run.sh --replicas 4                          # OMNeT++ replicas (profile omnetpp)
#   MALCOLM_SCENARIO=microburst docker/compose-run.sh --embedded  # embedded simulator replicas
#
# Knobs: the MALCOLM_* variables of docker/compose.yaml. Results: results/compose/<time>/
# (MALCOLM_COLLECT_DIR, relative to docker/). Uses `docker compose` (v2) where present, else
# docker-compose (v1). Exit status 1 when a replica fails, the server is not healthy, or the
# replicas are still running after --timeout-s (default 3600); every wait is bounded.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
file="$here/compose.yaml"

profile=omnetpp
service=omnetpp-env
replicas="${MALCOLM_ENV_REPLICAS:-2}"
timeout_s=3600
build=(--build)
while [ $# -gt 0 ]; do
  case "$1" in
    --embedded) profile=embedded; service=embedded-env; shift ;;
    --replicas) replicas="${2:?--replicas needs a number}"; shift 2 ;;
    --timeout-s) timeout_s="${2:?--timeout-s needs a number}"; shift 2 ;;
    --no-build) build=(); shift ;;
    -h|--help) awk 'NR > 1 && /^set -euo/ { exit } NR > 1' "$0"; exit 0 ;;
    *) echo "compose-run: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$replicas" =~ ^[1-9][0-9]*$ ]] || { echo "compose-run: --replicas wants a positive integer" >&2; exit 2; }
[[ "$timeout_s" =~ ^[1-9][0-9]*$ ]] || { echo "compose-run: --timeout-s wants a positive integer" >&2; exit 2; }

if docker compose version >/dev/null 2>&1; then
  compose=(docker compose -f "$file")
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose -f "$file")
else
  echo "compose-run: neither 'docker compose' nor docker-compose found" >&2
  exit 1
fi

# --scale rather than deploy.replicas: both compose generations honour it.
echo "compose-run: starting agent-server and $replicas $service replica(s) (${compose[*]})"
"${compose[@]}" --profile "$profile" up -d "${build[@]}" --scale "$service=$replicas"

stop_server() {
  # SIGTERM with a 60 s grace: the server saves its checkpoint and flushes its trace.
  "${compose[@]}" stop -t 60 agent-server >/dev/null 2>&1 || true
}
trap 'echo "compose-run: interrupted: stopping the stack"; "${compose[@]}" --profile "$profile" stop -t 60; exit 130' INT TERM

mapfile -t ids < <("${compose[@]}" --profile "$profile" ps -q "$service")
if [ "${#ids[@]}" -eq 0 ]; then
  echo "compose-run: no $service container is running (did the agent server become healthy? see: ${compose[*]} logs agent-server)" >&2
  stop_server
  exit 1
fi
echo "compose-run: waiting for ${#ids[@]} replica(s) (at most ${timeout_s}s; follow with: ${compose[*]} logs -f)"
status=0
if ! codes="$(timeout "$timeout_s" docker wait "${ids[@]}")"; then
  echo "compose-run: the replicas did not all finish within ${timeout_s}s" >&2
  "${compose[@]}" --profile "$profile" stop -t 30 "$service" >/dev/null 2>&1 || true
  status=1
fi
failed=0
while read -r code; do
  [ -z "$code" ] || [ "$code" -eq 0 ] || failed=$((failed + 1))
done <<<"${codes:-}"
if [ "$failed" -gt 0 ]; then
  echo "compose-run: $failed replica(s) exited non-zero; logs: ${compose[*]} logs $service" >&2
  status=1
fi
stop_server
"${compose[@]}" --profile collect run --rm collect || { echo "compose-run: collecting the volumes failed" >&2; status=1; }

if [ "$status" -eq 0 ]; then
  echo "compose-run: ok: ${#ids[@]} $service replica(s) finished; results collected (above)"
else
  echo "compose-run: FAILED (see above)"
fi
exit "$status"
