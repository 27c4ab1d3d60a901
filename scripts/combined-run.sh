#!/usr/bin/env bash
# A combined run on this machine, without Docker (what docker/compose.yaml does with images):
# starts `agent-server serve` on free local ports, waits until its gRPC health service says
# SERVING, then starts N environment processes against it and gathers everything in one folder.
#
#   scripts/combined-run.sh [--envs N] [--episodes N] [--scenario S] [--policy P] [--out DIR]
#                           [--quick] [--embedded] [more options: --help]
#   scripts/combined-run.sh --quick --out /tmp/cr          # the smoke test (< 1 min)
#   OMNETPP_ROOT=/opt/omnetpp-6.1 scripts/combined-run.sh --envs 3 --scenario hetero --record
#
# Environments: OMNeT++ Cmdenv runs (opp_run with our modules, the ini config matching the
# scenario, e.g. hetero -> [Hetero]) when OMNeT++ is found (OMNETPP_ROOT, or opp_run on PATH);
# otherwise, or with --embedded, `agent-server env` processes (the embedded rack simulator)
# stand in, and the script says so. Env i runs episodes i*E .. i*E+E-1 (seeds, or OMNeT++ run
# numbers), so the envs never repeat each other.
#
# The folder (--out, default results/combined-<time>) gets: agent-server.log, env-<i>.log,
# env-<i>.report.jsonl (embedded) or omnetpp/env-<i>/*.sca|*.vec (OMNeT++), trace.bridge.zst
# (--record), checkpoint.safetensors (saved by the server when it stops, learners only) and
# summary.txt. Ctrl-C stops the envs, then SIGTERMs the server so it saves its checkpoint.
# Exit status: 0 when every env finished and the server stopped cleanly; 1 when any part failed
# (an env, the server dying, health never SERVING, a timeout); 130 after Ctrl-C; 2 on bad usage.
# Every wait is bounded. The last line is a one-line verdict.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
  cat <<'EOF'
Usage: scripts/combined-run.sh [options]
  --envs N            environment processes (default 2)
  --episodes N        episodes per env: embedded episodes, or OMNeT++ runs (default 1)
  --scenario S        embedded scenario spec (hetero, ideal, microburst, hetero:rho=0.8, ...);
                      for OMNeT++ the ini config of the same name (default hetero)
  --omnetpp-config C  OMNeT++ ini config to run instead of the one matching --scenario
  --policy P          agent-server policy (default malcolm-strict)
  --mode M            train | eval | frozen (default train)
  --resume FILE       start from this checkpoint (copied into the folder, never overwritten)
  --record            record every envelope to <out>/trace.bridge.zst
  --out DIR           results folder (default results/combined-<unix time>)
  --timeout-s S       bound on the whole env phase (default 1800; 45 with --quick)
  --quick             short episodes (embedded: 6000 tasks; OMNeT++: 2 ms of sim time)
  --embedded          use the embedded simulator even where OMNeT++ is installed
  -h, --help          this help
Environment: MALCOLM_AGENT_SERVER_BIN (default target/release/agent-server, built if missing),
OMNETPP_ROOT (or opp_run on PATH) for the OMNeT++ envs.
EOF
}

# --- options -------------------------------------------------------------------------------
envs=2
episodes=1
scenario=hetero
omnetpp_config=""
policy=malcolm-strict
mode=train
resume=""
record=no
out=""
timeout_s=""
quick=no
force_embedded=no

need_value() {
  if [ $# -lt 2 ] || [ -z "$2" ]; then
    echo "combined-run: $1 needs a value" >&2
    exit 2
  fi
}
need_count() {
  [[ "$2" =~ ^[1-9][0-9]*$ ]] || { echo "combined-run: $1 wants a positive integer, got '$2'" >&2; exit 2; }
}
while [ $# -gt 0 ]; do
  case "$1" in
    --envs) need_value "$@"; need_count "$1" "$2"; envs="$2"; shift 2 ;;
    --episodes) need_value "$@"; need_count "$1" "$2"; episodes="$2"; shift 2 ;;
    --scenario) need_value "$@"; scenario="$2"; shift 2 ;;
    --omnetpp-config) need_value "$@"; omnetpp_config="$2"; shift 2 ;;
    --policy) need_value "$@"; policy="$2"; shift 2 ;;
    --mode) need_value "$@"; mode="$2"; shift 2 ;;
    --resume) need_value "$@"; resume="$2"; shift 2 ;;
    --record) record=yes; shift ;;
    --out) need_value "$@"; out="$2"; shift 2 ;;
    --timeout-s) need_value "$@"; need_count "$1" "$2"; timeout_s="$2"; shift 2 ;;
    --quick) quick=yes; shift ;;
    --embedded) force_embedded=yes; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "combined-run: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$mode" in train|eval|frozen) ;; *) echo "combined-run: --mode must be train, eval or frozen" >&2; exit 2 ;; esac
if [ -n "$resume" ] && [ ! -f "$resume" ]; then
  echo "combined-run: --resume $resume: no such file" >&2
  exit 2
fi
[ -n "$timeout_s" ] || { [ "$quick" = yes ] && timeout_s=45 || timeout_s=1800; }
out="${out:-$root/results/combined-$(date +%s)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

# Bounds of the waits that are not the env phase itself.
READY_TIMEOUT_S=30      # server process up and listening (libtorch loads in a second or two)
HEALTH_TIMEOUT_S=20     # gRPC health SERVING after that
STOP_TIMEOUT_S=30       # server saving its checkpoint and trace after SIGTERM
ENV_STOP_TIMEOUT_S=10   # an env exiting after SIGTERM
BUILD_TIMEOUT_S=1800    # building agent-server (when missing) or the OMNeT++ modules

started_at=$(date +%s)
build_pid=""
server_pid=""
env_pids=()
failures=()
verdict_printed=no

say() { echo "combined-run: $*"; }
fail() { failures+=("$*"); say "FAIL: $*"; }
elapsed() { echo $(( $(date +%s) - started_at )); }

# Polls until the process is gone or the timeout passes; returns 1 on timeout.
wait_gone() {
  local pid="$1" limit="$2" t=0
  while kill -0 "$pid" 2>/dev/null; do
    [ "$t" -ge $((limit * 10)) ] && return 1
    sleep 0.1
    t=$((t + 1))
  done
  return 0
}

# SIGTERM, a bounded wait, then SIGKILL: nothing outlives the script.
stop_process() {
  local pid="$1" limit="$2"
  kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_gone "$pid" "$limit"; then
    kill -KILL "$pid" 2>/dev/null || true
    return 1
  fi
  return 0
}

stop_envs() {
  local pid
  for pid in "${env_pids[@]}"; do
    [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${env_pids[@]}"; do
    [ -n "$pid" ] || continue
    wait_gone "$pid" "$ENV_STOP_TIMEOUT_S" || kill -KILL "$pid" 2>/dev/null || true
  done
}

# SIGTERM (not SIGKILL) so the server writes its checkpoint and flushes the trace; reports
# whether it stopped cleanly in time with exit status 0.
stop_server() {
  [ -n "$server_pid" ] || return 0
  local pid="$server_pid" status=0
  server_pid=""
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || status=$?
    fail "agent server had already exited (status $status; log: $out/agent-server.log)"
    return 0
  fi
  if ! stop_process "$pid" "$STOP_TIMEOUT_S"; then
    fail "agent server did not stop within ${STOP_TIMEOUT_S}s of SIGTERM (killed)"
    return 0
  fi
  wait "$pid" 2>/dev/null || status=$?
  [ "$status" -eq 0 ] || fail "agent server exited with status $status on SIGTERM (log: $out/agent-server.log)"
}

# A build in the background with a time bound, so that Ctrl-C (bash runs traps only between
# foreground commands, but during `wait`) can stop it: run_build LOG COMMAND...
run_build() {
  local log="$1" status=0
  shift
  timeout "$BUILD_TIMEOUT_S" "$@" >"$log" 2>&1 &
  build_pid=$!
  wait "$build_pid" || status=$?
  build_pid=""
  return "$status"
}

on_interrupt() {
  trap '' INT TERM
  say "interrupted: stopping the envs, then the server (it saves its checkpoint)"
  [ -z "$build_pid" ] || stop_process "$build_pid" "$ENV_STOP_TIMEOUT_S" || true
  stop_envs
  stop_server
  verdict_printed=yes
  say "INTERRUPTED after $(elapsed)s; partial results in $out"
  exit 130
}
# Whatever ends the script (set -e, a bug), no env or server is left behind.
on_exit() {
  local status=$?
  trap '' INT TERM
  [ -z "$build_pid" ] || stop_process "$build_pid" "$ENV_STOP_TIMEOUT_S" || true
  stop_envs
  [ -z "$server_pid" ] || stop_process "$server_pid" "$STOP_TIMEOUT_S" || true
  if [ "$verdict_printed" = no ] && [ "$status" -ne 0 ]; then
    say "FAILED (exit $status) after $(elapsed)s; logs in $out"
  fi
}
trap on_interrupt INT TERM
trap on_exit EXIT

# --- the agent server binary ---------------------------------------------------------------
# shellcheck source=scripts/env.sh
source "$root/scripts/env.sh"   # libtorch's lib/ on LD_LIBRARY_PATH (the rpath covers the rest)
bin="${MALCOLM_AGENT_SERVER_BIN:-$root/target/release/agent-server}"
if [ ! -x "$bin" ]; then
  say "building $bin (cargo build --release -p agent-server; run scripts/setup.sh first on a fresh machine)"
  # shellcheck disable=SC2016  # $0 expands in the child shell
  run_build "$out/build.log" bash -c 'cd "$0" && cargo build --release -p agent-server' "$root" ||
    { tail -n 20 "$out/build.log"; fail "agent-server build failed (log: $out/build.log)"; exit 1; }
fi

# --- which environments --------------------------------------------------------------------
kind=embedded
if [ "$force_embedded" = yes ]; then
  say "--embedded: the embedded rack simulator (agent-server env) plays the environments"
else
  # shellcheck source=scripts/omnetpp-env.sh
  source "$root/scripts/omnetpp-env.sh"
  if malcolm_find_omnetpp >/dev/null; then
    kind=omnetpp
  else
    say "OMNeT++ not found (set OMNETPP_ROOT or put opp_run on PATH): the embedded rack simulator (agent-server env) stands in for it"
  fi
fi

# The ini config for a scenario: --omnetpp-config, else the config whose name equals the
# scenario's name case-insensitively (hetero -> Hetero, microburst -> MicroBurst).
omnetpp_configs() {
  sed -n 's/^\[\(Config \)\{0,1\}\([A-Za-z0-9_-]*\)\]$/\2/p' "$root/ini/omnetpp.ini" | grep -vx General
}
pick_omnetpp_config() {
  local want="${omnetpp_config:-${scenario%%:*}}" c
  while read -r c; do
    if [ "${c,,}" = "${want,,}" ]; then
      echo "$c"
      return 0
    fi
  done < <(omnetpp_configs)
  echo "combined-run: no ini config named '$want' in ini/omnetpp.ini (configs: $(omnetpp_configs | tr '\n' ' ')); pick one with --omnetpp-config, or use --embedded" >&2
  return 1
}

if [ "$kind" = omnetpp ]; then
  config="$(pick_omnetpp_config)" || exit 2
  [ "$scenario" = "${scenario%%:*}" ] || say "OMNeT++ runs config $config; the overrides in '$scenario' apply to the embedded simulator only"
  say "OMNeT++ at $OMNETPP_ROOT: building the simple modules (cmake, incremental)"
  # Built once here, not by each scripts/omnetpp-run.sh: N runs starting at once would run
  # cmake on the same build tree concurrently.
  # shellcheck disable=SC2016  # $0 expands in the child shell
  if ! run_build "$out/omnetpp-build.log" \
       bash -c 'source "$0/scripts/omnetpp-env.sh" && malcolm_find_omnetpp >/dev/null && malcolm_build_modules "$0"' "$root"; then
    tail -n 20 "$out/omnetpp-build.log"
    fail "OMNeT++ module build failed or took over ${BUILD_TIMEOUT_S}s (log: $out/omnetpp-build.log)"
    exit 1
  fi
  MALCOLM_OMNETPP_LIB="$root/omnetpp/build/libmalcolm_omnetpp.so"
  label="$config"
else
  env_scenario="$scenario"
  if [ "$quick" = yes ] && [[ "$scenario" != *tasks=* ]]; then
    # The same short episodes as `agent-server train --quick`.
    [[ "$scenario" == *:* ]] && env_scenario="$scenario,tasks=6000,warmup=500" || env_scenario="$scenario:tasks=6000,warmup=500"
  fi
  label="$env_scenario"
fi

# --- the agent server ----------------------------------------------------------------------
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
endpoint="tcp://127.0.0.1:$(free_port)"
checkpoint="$out/checkpoint.safetensors"
if [ -n "$resume" ]; then
  cp "$resume" "$checkpoint"
fi
server_args=(serve --bind "$endpoint" --control 127.0.0.1:0 --policy "$policy" --mode "$mode"
  --checkpoint "$checkpoint" --scenario "$label")
[ "$record" = yes ] && server_args+=(--record "$out/trace.bridge.zst")
say "agent server: $bin ${server_args[*]}"
"$bin" "${server_args[@]}" >"$out/agent-server.log" 2>&1 &
server_pid=$!

# The control port is picked by the server (port 0): read it from its "ready" log line.
wait_server_ready() {
  local t=0 line
  while [ "$t" -lt $((READY_TIMEOUT_S * 10)) ]; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      tail -n 20 "$out/agent-server.log"
      return 2
    fi
    line="$(grep -m1 'agent server ready' "$out/agent-server.log" 2>/dev/null || true)"
    if [ -n "$line" ]; then
      control="$(sed -n 's/.*control=\([^ ]*\).*/\1/p' <<<"$line")"
      [ -n "$control" ] && return 0
    fi
    sleep 0.1
    t=$((t + 1))
  done
  return 1
}
wait_healthy() {
  local deadline=$(( $(date +%s) + HEALTH_TIMEOUT_S ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    kill -0 "$server_pid" 2>/dev/null || return 1
    "$bin" health --addr "$control" --timeout-s 2 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}
control=""
ready=0
wait_server_ready || ready=$?
if [ "$ready" -ne 0 ]; then
  if [ "$ready" -eq 2 ]; then
    wait "$server_pid" 2>/dev/null || ready=$?
    server_pid=""
    fail "agent server exited at start (status $ready; log: $out/agent-server.log)"
  else
    fail "agent server did not come up within ${READY_TIMEOUT_S}s (log: $out/agent-server.log)"
    stop_server
  fi
  exit 1
fi
if ! wait_healthy; then
  fail "agent server health never SERVING at $control within ${HEALTH_TIMEOUT_S}s (log: $out/agent-server.log)"
  stop_server
  exit 1
fi
say "agent server SERVING (bridge $endpoint, control $control, policy $policy, mode $mode)"

# --- the environments ----------------------------------------------------------------------
start_embedded_env() {
  local i="$1"
  "$bin" env --connect "$endpoint" --scenario "$env_scenario" --episodes "$episodes" \
    --seed $((1 + i * episodes)) --env-id "embedded-$i" --timeout-s 30 \
    --report "$out/env-$i.report.jsonl" >"$out/env-$i.log" 2>&1 &
  env_pids[i]=$!
}
# The same opp_run invocation as scripts/omnetpp-run.sh (Cmdenv, our library and NED path,
# strict agent: no fallback policy), plus a run range per env: --repeat makes enough runs
# (seed-set = repetition in the ini) for every env to get its own.
start_omnetpp_env() {
  local i="$1"
  local first=$((i * episodes)) result="$out/omnetpp/env-$i"
  local args=(-u Cmdenv -l "$MALCOLM_OMNETPP_LIB" -n "$root/ned" -c "$config"
    -r "$first..$((first + episodes - 1))" "--repeat=$((envs * episodes))" "--result-dir=$result"
    "--**.coordinator.agentEndpoint=\"$endpoint\"" "--**.coordinator.fallbackPolicy=\"\""
    "--**.coordinator.envId=\"omnetpp-$i\"")
  [ "$quick" = yes ] && args+=(--sim-time-limit=2ms)
  mkdir -p "$result"
  (cd "$root/ini" && exec "$OPP_RUN" "${args[@]}" omnetpp.ini) >"$out/env-$i.log" 2>&1 &
  env_pids[i]=$!
}

if [ "$kind" = omnetpp ]; then
  say "starting $envs OMNeT++ Cmdenv run(s) of [$config], $episodes run(s) each$([ "$quick" = yes ] && echo ', 2 ms of sim time')"
else
  say "starting $envs embedded env(s), scenario $env_scenario, $episodes episode(s) each"
fi
for ((i = 0; i < envs; i++)); do
  if [ "$kind" = omnetpp ]; then start_omnetpp_env "$i"; else start_embedded_env "$i"; fi
done

# Waits for every env, watching the server too; gives up at the deadline.
env_status=()
wait_envs() {
  local deadline=$(( $(date +%s) + timeout_s )) remaining i status
  while :; do
    remaining=0
    for ((i = 0; i < envs; i++)); do
      [ -z "${env_status[i]:-}" ] || continue
      if kill -0 "${env_pids[i]}" 2>/dev/null; then
        remaining=$((remaining + 1))
        continue
      fi
      status=0
      wait "${env_pids[i]}" 2>/dev/null || status=$?
      env_status[i]=$status
      env_pids[i]=""
      if [ "$status" -eq 0 ]; then
        say "env $i finished ($(elapsed)s)"
      else
        tail -n 10 "$out/env-$i.log" | sed "s/^/  env-$i: /"
        fail "env $i exited with status $status (log: $out/env-$i.log)"
      fi
    done
    [ "$remaining" -eq 0 ] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      tail -n 10 "$out/agent-server.log" | sed 's/^/  agent-server: /'
      fail "agent server died while $remaining env(s) were running"
      return 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      fail "$remaining env(s) still running after --timeout-s $timeout_s"
      return 1
    fi
    sleep 0.2
  done
}
wait_envs || true
stop_envs
stop_server

# --- results -------------------------------------------------------------------------------
if [ "$kind" = embedded ]; then
  for ((i = 0; i < envs; i++)); do
    [ "${env_status[i]:-x}" = 0 ] || continue
    n="$(grep -c . "$out/env-$i.report.jsonl" 2>/dev/null || true)"
    [ "${n:-0}" -eq "$episodes" ] || fail "env $i wrote ${n:-0} of $episodes episode reports ($out/env-$i.report.jsonl)"
  done
else
  for ((i = 0; i < envs; i++)); do
    [ "${env_status[i]:-x}" = 0 ] || continue
    n="$(find "$out/omnetpp/env-$i" -name '*.sca' | wc -l)"
    [ "$n" -eq "$episodes" ] || fail "env $i wrote $n of $episodes .sca files ($out/omnetpp/env-$i)"
  done
fi
if [ -f "$checkpoint" ]; then
  ckpt_note="checkpoint.safetensors"
elif grep -q 'no checkpoint saved' "$out/agent-server.log"; then
  ckpt_note="no checkpoint (policy $policy has no learner)"
else
  ckpt_note="no checkpoint"
  [ "${#failures[@]}" -gt 0 ] || fail "the server wrote no checkpoint and did not say why (log: $out/agent-server.log)"
fi
if [ "$record" = yes ] && [ ! -s "$out/trace.bridge.zst" ]; then
  fail "--record: no trace written ($out/trace.bridge.zst)"
fi

{
  echo "combined run $(date -u +%Y-%m-%dT%H:%M:%SZ), $(elapsed)s"
  echo "server: policy $policy, mode $mode, bridge $endpoint, control $control"
  echo "envs: $envs x $episodes, $kind, $label"
  for ((i = 0; i < envs; i++)); do
    echo "env $i (exit ${env_status[i]:-killed}):"
    # The per-episode lines each kind prints: rack-sim's "episode ..." and OMNeT++'s "[malcolm] ...".
    grep -hE '(^|\] )(\S+ episode [0-9]+ seed|\[malcolm\] [A-Za-z0-9]+: )' "$out/env-$i.log" 2>/dev/null | sed 's/^/  /' || true
  done
  echo "checkpoint: $ckpt_note"
  [ "$record" = yes ] && echo "trace: trace.bridge.zst"
  if [ "${#failures[@]}" -gt 0 ]; then
    printf 'failure: %s\n' "${failures[@]}"
  fi
} >"$out/summary.txt"

verdict_printed=yes
if [ "${#failures[@]}" -gt 0 ]; then
  say "FAILED: ${#failures[@]} problem(s) (${failures[0]}); logs and results in $out"
  exit 1
fi
say "ok: $envs $kind env(s) x $episodes episode(s) of $label against agent-server ($policy, $mode) in $(elapsed)s; $ckpt_note; results in $out"
