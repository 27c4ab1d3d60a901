#!/usr/bin/env bash
# The OMNeT++ checks of issue 6, run when OMNeT++ is present (skipped with a message when not):
#   1. every ini config runs to completion in Cmdenv (first run of each; against the agent
#      server when one is available, else with the local fallback policy, said so);
#   2. incast (9 and 50 to 1 in a rack, 50 to 1 across 4 racks) with PFC on loses no frame
#      and counts PAUSE frames; with PFC off it drops;
#   3. EDF servers meet more deadlines than FCFS servers on the same workload;
#   4. the 16-byte heartbeats on the wire equal the golden vectors (proto/testdata);
#   5. sim speed (events/s) of Hetero with a local policy, Malcolm-Strict evaluating and
#      training over ZeroMQ and embedded, alternated, and the ratios agent / local;
#   6. an unreachable agent stops a run with a clear error, or the fallback policy takes over;
#   7. the same when the agent server dies in the middle of a run;
#   8. service estimates draw from their own RNG (exact vs noisy: same tasks and latencies).
# Agent: MALCOLM_AGENT_ENDPOINT=tcp://host:port uses a running server; otherwise
# MALCOLM_AGENT_SERVER_BIN (default target/release/agent-server) is started on a free port
# ("serve --bind ENDPOINT" plus MALCOLM_AGENT_SERVER_ARGS) and stopped at the end.
# MALCOLM_CHECK_SIMTIME shortens every run (default 5ms; "" keeps the ini's limits);
# MALCOLM_CHECK_SPEED_ROUNDS sets check 5's rounds (default 3); MALCOLM_AGENT_LIBRARY the
# embedded agent (default target/release/libmalcolm_agent.so).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/omnetpp-env.sh
source "$root/scripts/omnetpp-env.sh"
malcolm_find_omnetpp || exit 0
malcolm_build_modules "$root"

out="$root/results/omnetpp-check"
rm -rf "$out"
mkdir -p "$out"
simtime="${MALCOLM_CHECK_SIMTIME-5ms}"
speed_rounds="${MALCOLM_CHECK_SPEED_ROUNDS:-3}"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }
# A TCP port free on loopback right now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- agent -----------------------------------------------------------------------------------
agent_pid=""
endpoint="${MALCOLM_AGENT_ENDPOINT:-}"
cleanup() { [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null && wait "$agent_pid" 2>/dev/null; true; }
trap cleanup EXIT
if [ -z "$endpoint" ]; then
  bin="${MALCOLM_AGENT_SERVER_BIN:-$root/target/release/agent-server}"
  if [ -x "$bin" ]; then
    port="$(free_port)"
    endpoint="tcp://127.0.0.1:$port"
    # shellcheck disable=SC2086
    "$bin" serve --bind "$endpoint" ${MALCOLM_AGENT_SERVER_ARGS:---control 127.0.0.1:0} >"$out/agent-server.log" 2>&1 &
    agent_pid=$!
    sleep 1
    if ! kill -0 "$agent_pid" 2>/dev/null; then
      cat "$out/agent-server.log"
      fail "agent server $bin did not start"
      agent_pid=""
      endpoint=""
    else
      echo "agent server: $bin serve --bind $endpoint (pid $agent_pid)"
    fi
  fi
fi
[ -z "$endpoint" ] && echo "no agent server (set MALCOLM_AGENT_ENDPOINT or build target/release/agent-server): runs use the ini's local fallback policy (power-of-2; local in DisciplineCompare)"

# run NAME CONFIG RUNFILTER AGENT [extra opp_run args]; AGENT "yes": the agent server when
# there is one (strict: no fallback), else the ini's fallback policy; "no": the ini's policy;
# a tcp:// endpoint: the agent server there (strict); "embedded:<flags>": the agent in process.
run() {
  local name="$1" config="$2" filter="$3" agent="$4"
  shift 4
  local args=(-u Cmdenv -l "$MALCOLM_OMNETPP_LIB" -n "$root/ned" -c "$config" -r "$filter"
    "--result-dir=$out/$name" "--cmdenv-express-mode=true" "--cmdenv-status-frequency=600s")
  [ -n "$simtime" ] && args+=("--sim-time-limit=$simtime")
  if [[ "$agent" == tcp://* || "$agent" == embedded:* ]]; then
    args+=("--**.coordinator.agentEndpoint=\"$agent\"" "--**.coordinator.fallbackPolicy=\"\"")
  elif [ "$agent" = yes ] && [ -n "$endpoint" ]; then
    args+=("--**.coordinator.agentEndpoint=\"$endpoint\"" "--**.coordinator.fallbackPolicy=\"\"")
  else
    args+=("--**.coordinator.agentEndpoint=\"\"")
  fi
  if (cd "$root/ini" && "$OPP_RUN" "${args[@]}" "$@" omnetpp.ini) >"$out/$name.log" 2>&1; then
    grep -h '^\[malcolm\]' "$out/$name.log" | tail -n 1 | sed "s/^/      $name: /"
    return 0
  fi
  tail -n 15 "$out/$name.log"
  fail "$config ($filter) did not run to completion (log: $out/$name.log)"
  return 1
}

# Sum of the scalars of the runs in one result directory whose module and name fully match
# the given Python regular expressions: sum_scalar DIR MODULE-REGEX NAME-REGEX
sum_scalar() {
  "$OPP_SCAVETOOL" export -F CSV-R -o - -f 'type =~ scalar' "$1"/*.sca 2>/dev/null |
    python3 -c '
import csv, re, sys
mod, name = re.compile(sys.argv[1]), re.compile(sys.argv[2])
rows = [r for r in csv.DictReader(sys.stdin)
        if r["type"] == "scalar" and mod.fullmatch(r["module"]) and name.fullmatch(r["name"])]
print(sum(float(r["value"]) for r in rows) if rows else "nan")' "$2" "$3"
}

echo "== 1. every config runs to completion in Cmdenv (first run, sim-time-limit ${simtime:-from ini})"
# (Incast and IncastTwoTier run in check 2.)
for c in Hetero Ideal DisciplineCompare PfcStorm PfcStormHetero HeavyTailSweep StalenessSweep LoadSweep MicroBurst HeartbeatGolden TraceReplay; do
  run "all-$c" "$c" 0 yes && pass "$c"
done

# incast_check LABEL CONFIG FILTER: the run with PFC on loses no frame (switches and NICs)
# and counts PAUSE frames; the same run with PFC off drops frames.
incast_check() {
  local label="$1" config="$2" filter="$3" on="$4-pfc-on" off="$4-pfc-off"
  if run "$on" "$config" "$filter && \$pfc==true && \$repetition==0" yes &&
     run "$off" "$config" "$filter && \$pfc==false && \$repetition==0" yes; then
    local sw='.*\.(tor(\[[0-9]+\])?|spine)'
    local on_drops on_nic_drops on_pauses on_rx_pauses off_drops off_pauses
    on_drops="$(sum_scalar "$out/$on" "$sw" framesDropped)"
    on_nic_drops="$(sum_scalar "$out/$on" '.*\.nic' 'rxDrops:count')"
    on_pauses="$(sum_scalar "$out/$on" "$sw" pauseFramesSentTotal)"
    on_rx_pauses="$(sum_scalar "$out/$on" '.*\.nic' 'pauseFramesReceived:count')"
    off_drops="$(sum_scalar "$out/$off" "$sw" framesDropped)"
    off_pauses="$(sum_scalar "$out/$off" "$sw" pauseFramesSentTotal)"
    echo "      $label PFC on:  switch drops $on_drops, NIC drops $on_nic_drops, PAUSE frames sent by switches $on_pauses (PAUSE/RESUME received by NICs $on_rx_pauses)"
    echo "      $label PFC off: switch drops $off_drops, PAUSE frames $off_pauses, RDMA writes lost $(sum_scalar "$out/$off" '.*\.nic' 'writesLost:count') (PFC on: $(sum_scalar "$out/$on" '.*\.nic' 'writesLost:count'))"
    python3 -c "import sys; sys.exit(0 if float('$on_drops') == 0 and float('$on_nic_drops') == 0 and float('$on_pauses') > 0 and float('$on_rx_pauses') > 0 else 1)" &&
      pass "$label PFC on: no frame lost, $on_pauses PAUSE frames" || fail "$label PFC on: drops $on_drops/$on_nic_drops, pauses $on_pauses"
    python3 -c "import sys; sys.exit(0 if float('$off_drops') > 0 and float('$off_pauses') == 0 else 1)" &&
      pass "$label PFC off: $off_drops frames dropped" || fail "$label PFC off: drops $off_drops, pauses $off_pauses"
  fi
}

echo "== 2. incast: PFC on loses no frame and counts PAUSEs; PFC off drops"
incast_check "Incast 9-to-1 (one rack)" Incast '$fanIn==9' incast9
incast_check "Incast 50-to-1 (one rack)" Incast '$fanIn==50' incast50
incast_check "IncastTwoTier 50-to-1 (4 racks)" IncastTwoTier 'true' incast2tier

echo "== 3. EDF vs FCFS on the same workload (DisciplineCompare: same seeds, tasks run where they arrive)"
met() { sum_scalar "$1" '.*\.scheduler' 'completed:count'; }
if run edf DisciplineCompare '$discipline=="edf" && $repetition==0' no &&
   run fcfs DisciplineCompare '$discipline=="fcfs" && $repetition==0' no; then
  edf_met="$(met "$out/edf")"
  fcfs_met="$(met "$out/fcfs")"
  edf_all="$(sum_scalar "$out/edf" '.*\.scheduler' '(completed|missed|dropped):count')"
  fcfs_all="$(sum_scalar "$out/fcfs" '.*\.scheduler' '(completed|missed|dropped):count')"
  echo "      deadlines met: EDF $edf_met of $edf_all tasks, FCFS $fcfs_met of $fcfs_all tasks"
  python3 -c "import sys; sys.exit(0 if float('$edf_met') > float('$fcfs_met') else 1)" &&
    pass "EDF meets more deadlines than FCFS" || fail "EDF $edf_met vs FCFS $fcfs_met deadlines met"
  # For information: the same comparison when power-of-2 spreads the tasks.
  if run edf-po2 DisciplineCompare '$discipline=="edf" && $repetition==0' no '--**.coordinator.fallbackPolicy="power-of-2"' &&
     run fcfs-po2 DisciplineCompare '$discipline=="fcfs" && $repetition==0' no '--**.coordinator.fallbackPolicy="power-of-2"'; then
    echo "      with power-of-2 placement: EDF $(met "$out/edf-po2") met, FCFS $(met "$out/fcfs-po2") met"
  fi
fi

echo "== 4. heartbeat bytes on the wire equal the golden vectors"
if run golden HeartbeatGolden 0 no; then
  expected="$(sum_scalar "$out/golden" '.*\.node\[1\]\.app' goldenHeartbeatsExpected)"
  matched="$(sum_scalar "$out/golden" '.*\.node\[1\]\.app' goldenHeartbeatsMatched)"
  mismatched="$(sum_scalar "$out/golden" '.*\.node\[1\]\.app' goldenHeartbeatsMismatched)"
  python3 -c "import sys; e,m,x=float('$expected'),float('$matched'),float('$mismatched'); sys.exit(0 if e >= 9 and m == e and x == 0 else 1)" &&
    pass "$matched of $expected golden heartbeats arrived byte-identical" || fail "golden heartbeats: expected $expected matched $matched mismatched $mismatched"
fi

echo "== PFC storm (information): a slow receiver's PAUSEs spread to its senders"
if [ -d "$out/all-PfcStorm" ]; then
  d="$out/all-PfcStorm"
  echo "      node 0 NIC PAUSEs to the ToR: $(sum_scalar "$d" '.*\.node\[0\]\.nic' 'pauseFramesSent:count'); ToR PAUSEs upstream: $(sum_scalar "$d" '.*\.tor' pauseFramesSentTotal) to $(sum_scalar "$d" '.*\.tor' portsThatSentPause) ports (max XOFF pairs $(sum_scalar "$d" '.*\.tor' 'pausedIngressPorts:max')); senders paused $(python3 -c "print(round(100*float('$(sum_scalar "$d" '.*\.node\[[1-4]\]\.nic' 'pausedFraction:timeavg')')/4))")% of the time"
fi

echo "== 5. sim speed, Hetero ${simtime:-(ini limit)} (events per wall-clock second once the agent is connected; median of $speed_rounds alternated rounds)"
# Each round: the local power-of-2 (no bridge); Malcolm-Strict greedy (eval mode, untrained
# weights: the cost does not depend on them) over ZeroMQ (its own `serve`, TCP) and embedded
# (libmalcolm_agent.so in the simulation's process); Malcolm-Strict training, a fresh learner
# each time, over ZeroMQ and embedded. The ratios say what the agent costs; ZeroMQ with
# protocol v1 was the only way before the embedded agent and the coordinator's v2 Steps.
lib="${MALCOLM_AGENT_LIBRARY:-$root/target/release/libmalcolm_agent.so}"
# serve_speed NAME MODE [opp_run args]: a fresh `serve --mode MODE` on a free port for one
# run of Hetero.
serve_speed() {
  local name="$1" mode="$2" port pid ok=0
  shift 2
  port="$(free_port)"
  "$bin" serve --bind "tcp://127.0.0.1:$port" --control 127.0.0.1:0 --policy malcolm-strict --mode "$mode" --log warn \
    >"$out/agent-server-$name.log" 2>&1 &
  pid=$!
  sleep 1
  if kill -0 "$pid" 2>/dev/null && run "$name" Hetero 0 "tcp://127.0.0.1:$port" "$@"; then ok=1; fi
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  [ "$ok" = 1 ]
}
speed_csv="$out/speed.csv"
echo "round,run,events_per_s,steps,bridge_s,step_build_s,connect_s,learner_updates,learner_transitions,learner_dropped,replay_ratio,env_wait_s" >"$speed_csv"
# (The learner's figures are in the .sca of embedded runs only: a server keeps its own.)
record_speed() {
  # One export per run: the coordinator's scalars in the CSV's column order ("nan" if absent).
  local row
  row="$("$OPP_SCAVETOOL" export -F CSV-R -o - -f 'type =~ scalar' "$out/$3"/*.sca 2>/dev/null | python3 -c '
import csv, sys
names = ["eventsPerWallSecond", "agentSteps", "bridgeWallSeconds", "stepBuildWallSeconds", "connectWallSeconds",
         "learnerUpdates", "learnerTransitions", "learnerTransitionsDropped", "learnerReplayRatio", "learnerEnvWaitSeconds"]
got = {r["name"]: r["value"] for r in csv.DictReader(sys.stdin)
       if r["type"] == "scalar" and r["module"].endswith(".coordinator") and r["name"] in names}
print(",".join(got.get(n, "nan") for n in names))')"
  echo "$1,$2,$row" >>"$speed_csv"
}
bin="${MALCOLM_AGENT_SERVER_BIN:-$root/target/release/agent-server}"
[ -x "$bin" ] || echo "      no agent server binary ($bin): the ZeroMQ runs are skipped"
[ -f "$lib" ] || echo "      no embedded agent library ($lib; cargo build --release -p malcolm-agent-ffi): the embedded runs are skipped"
for round in $(seq 1 "$speed_rounds"); do
  run "speed-local-$round" Hetero 0 no && record_speed "$round" local "speed-local-$round"
  if [ -x "$bin" ]; then
    serve_speed "speed-zmq1-eval-$round" eval '--**.coordinator.protocolVersion=1' &&
      record_speed "$round" zmq-v1-eval "speed-zmq1-eval-$round"
    serve_speed "speed-zmq-eval-$round" eval && record_speed "$round" zmq-eval "speed-zmq-eval-$round"
    serve_speed "speed-zmq-train-$round" train && record_speed "$round" zmq-train "speed-zmq-train-$round"
  fi
  if [ -f "$lib" ]; then
    MALCOLM_AGENT_LIBRARY="$lib" run "speed-emb-eval-$round" Hetero 0 "embedded:--policy malcolm-strict --mode eval" &&
      record_speed "$round" embedded-eval "speed-emb-eval-$round"
    MALCOLM_AGENT_LIBRARY="$lib" run "speed-emb-train-$round" Hetero 0 "embedded:--policy malcolm-strict --mode train" &&
      record_speed "$round" embedded-train "speed-emb-train-$round"
  fi
done
python3 - "$speed_csv" "$out" <<'PY' || fail "sim speed figures"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
def med(run, col):
    v = [float(r[col]) for r in rows if r["run"] == run]
    return statistics.median(v) if v else None
local = med("local", "events_per_s")
if local is None:
    sys.exit(1)
print(f"      local power-of-2: {local / 1e6:.2f} M ev/s")
labels = {"zmq-v1-eval": "Malcolm-Strict evaluating, ZeroMQ (TCP), protocol v1",
          "zmq-eval": "Malcolm-Strict evaluating, ZeroMQ (TCP)", "embedded-eval": "Malcolm-Strict evaluating, embedded",
          "zmq-train": "Malcolm-Strict training, ZeroMQ (TCP)", "embedded-train": "Malcolm-Strict training, embedded"}
ratio = {}
for run, label in labels.items():
    ev = med(run, "events_per_s")
    if ev is None:
        continue
    ratio[run] = ev / local
    steps, bridge, build = med(run, "steps"), med(run, "bridge_s"), med(run, "step_build_s")
    extra = ""
    if run == "embedded-train":
        # The learner's own figures (medians over the rounds), from the runs' .sca.
        extra = (f"; learner: {med(run, 'learner_updates'):.0f} updates, {med(run, 'learner_transitions'):.0f} "
                 f"transitions, {med(run, 'learner_dropped'):.0f} dropped, replay ratio "
                 f"{med(run, 'replay_ratio'):.1f}, {med(run, 'env_wait_s'):.2f} s waiting for it")
    print(f"      {label}: {ev / 1e6:.2f} M ev/s (ratio {ev / local:.2f}), {steps:.0f} Steps, "
          f"{1e6 * bridge / steps:.0f} us per Step in the agent call, {1e6 * build / steps:.0f} us building it{extra}")
r = lambda k: f"{ratio[k]:.2f}" if k in ratio else "n/a"
print(f"      ratios agent / local: evaluating {r('zmq-v1-eval')} over ZeroMQ v1 (the only way before) -> {r('zmq-eval')} v2 -> {r('embedded-eval')} embedded; "
      f"training {r('zmq-train')} -> {r('embedded-train')} (goal >= 0.5; table: {sys.argv[1]})")
PY

echo "== 6. unreachable agent: a clear error, or the named fallback policy when configured"
dead="tcp://127.0.0.1:$(free_port)"
dead_args=(-u Cmdenv -l "$MALCOLM_OMNETPP_LIB" -n "$root/ned" -c Hetero -r 0 --sim-time-limit=1ms
  "--result-dir=$out/dead" "--**.coordinator.agentEndpoint=\"$dead\"" "--**.coordinator.bridgeTimeout=0.5s")
if (cd "$root/ini" && "$OPP_RUN" "${dead_args[@]}" '--**.coordinator.fallbackPolicy=""' omnetpp.ini) >"$out/dead-strict.log" 2>&1; then
  fail "a run against a dead agent endpoint succeeded"
elif grep -q "unavailable: Hello: no reply from agent" "$out/dead-strict.log"; then
  pass "no agent, no fallback: $(grep -o 'Error: agent at [^(]*' "$out/dead-strict.log" | head -n 1)(...)"
else
  tail -n 5 "$out/dead-strict.log"
  fail "a dead agent endpoint did not give the expected error"
fi
if (cd "$root/ini" && "$OPP_RUN" "${dead_args[@]}" '--**.coordinator.fallbackPolicy="power-of-2"' omnetpp.ini) >"$out/dead-fallback.log" 2>&1 &&
   grep -q "continuing with the local fallback policy 'power-of-2'" "$out/dead-fallback.log"; then
  pass "no agent, fallbackPolicy power-of-2: the run continues and says so"
else
  tail -n 5 "$out/dead-fallback.log"
  fail "the fallback policy did not take over from a dead agent"
fi

echo "== 7. the agent dies in the middle of a run: a clear error, or the fallback policy takes over"
# midrun NAME FALLBACK: starts a private agent server (po2, quick to start), kills it 1 s into
# a long Hetero run, prints the run's exit status.
midrun() {
  local name="$1" fallback="$2" port ep pid rc
  port="$(free_port)"
  ep="tcp://127.0.0.1:$port"
  "$bin" serve --bind "$ep" --control 127.0.0.1:0 --policy po2 >"$out/$name-agent.log" 2>&1 &
  pid=$!
  sleep 1
  (cd "$root/ini" && "$OPP_RUN" -u Cmdenv -l "$MALCOLM_OMNETPP_LIB" -n "$root/ned" -c Hetero -r 0 --sim-time-limit=200ms \
    "--result-dir=$out/$name" "--**.coordinator.agentEndpoint=\"$ep\"" "--**.coordinator.bridgeTimeout=0.5s" \
    "--**.coordinator.fallbackPolicy=\"$fallback\"" omnetpp.ini) >"$out/$name.log" 2>&1 &
  local sim=$!
  sleep 2
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
  wait "$sim" && rc=0 || rc=$?
  echo "$rc"
}
if [ -n "$agent_pid" ]; then
  rc="$(midrun midrun-strict "")"
  if [ "$rc" != 0 ] && grep -q "Step: no reply from agent" "$out/midrun-strict.log"; then
    pass "agent killed mid-run, no fallback: the run stops with: $(grep -o 'Error: agent at [^(]*' "$out/midrun-strict.log" | head -n 1)(...)"
  else
    tail -n 5 "$out/midrun-strict.log"
    fail "agent killed mid-run without fallback: exit $rc, expected an error naming the Step timeout"
  fi
  rc="$(midrun midrun-fallback power-of-2)"
  if [ "$rc" = 0 ] && grep -q "continuing with the local fallback policy 'power-of-2'" "$out/midrun-fallback.log"; then
    pass "agent killed mid-run, fallbackPolicy power-of-2: $(sum_scalar "$out/midrun-fallback" '.*\.coordinator' agentSteps) Steps by the agent, then $(sum_scalar "$out/midrun-fallback" '.*\.coordinator' fallbackDecisions) local decisions"
  else
    tail -n 5 "$out/midrun-fallback.log"
    fail "agent killed mid-run with a fallback policy: exit $rc"
  fi
else
  echo "      (skipped: needs the agent-server binary)"
fi

echo "== 8. service estimates draw from their own RNG: the same workload under exact and noisy estimates"
# FCFS servers, local placement: under either model every task runs the same (same arrivals,
# services, latencies); only the deadlines (D = A + F x estimate), hence the on-time count, move.
if run est-exact DisciplineCompare '$discipline=="fcfs" && $repetition==0' no '--**.app.estimate="exact"' &&
   run est-noisy DisciplineCompare '$discipline=="fcfs" && $repetition==0' no '--**.app.estimate="noisy"'; then
  gen_e="$(sum_scalar "$out/est-exact" '.*\.app' 'generated:count')"
  gen_n="$(sum_scalar "$out/est-noisy" '.*\.app' 'generated:count')"
  lat_e="$(sum_scalar "$out/est-exact" '.*\.scheduler' 'latency:mean')"
  lat_n="$(sum_scalar "$out/est-noisy" '.*\.scheduler' 'latency:mean')"
  met_e="$(met "$out/est-exact")"
  met_n="$(met "$out/est-noisy")"
  echo "      exact: $gen_e tasks, latency-mean sum $lat_e, $met_e on time; noisy: $gen_n tasks, latency-mean sum $lat_n, $met_n on time"
  if [ "$gen_e" = "$gen_n" ] && [ "$lat_e" = "$lat_n" ] && [ "$met_e" != "$met_n" ]; then
    pass "same tasks and latencies under both models; only the deadlines (on-time count) differ"
  else
    fail "estimates are not on their own stream, or have no effect (see the line above)"
  fi
fi

echo "== 9. link state in the agent's view: PfcStorm Steps carry each link with the documented meaning"
# A recording agent server serves a PfcStorm run; the trace's Steps must list every node's
# uplink (link_id 2n) and the ToR's downlink to it (2n+1), with monotone counters, the slow
# receiver's downlink PAUSEd at some Step and queues building somewhere.
py="${MALCOLM_VENV:-$HOME/.cache/malcolm-strict/venv}/bin/python"
if [ -z "$agent_pid" ] || ! "$py" -c 'import malcolm_gym' 2>/dev/null; then
  echo "      (skipped: needs the agent-server binary and the project's venv with malcolm-gym)"
else
  port="$(free_port)"
  rec_ep="tcp://127.0.0.1:$port"
  "$bin" serve --bind "$rec_ep" --control 127.0.0.1:0 --policy po2 --mode eval --record "$out/pfcstorm.trace" \
    >"$out/pfcstorm-agent.log" 2>&1 &
  rec_pid=$!
  sleep 1
  saved_endpoint="$endpoint"
  endpoint="$rec_ep"
  simtime=1ms run pfcstorm-links PfcStorm 0 yes && ran=yes || ran=no
  endpoint="$saved_endpoint"
  kill -INT "$rec_pid" 2>/dev/null
  wait "$rec_pid" 2>/dev/null || true
  if [ "$ran" = yes ] && verdict="$("$py" - "$out/pfcstorm.trace" <<'PY'
import sys
from malcolm_gym.trace import read_trace
from malcolm.bridge.v1 import trace_pb2
_, records = read_trace(sys.argv[1])
steps = [r.envelope.step for r in records
         if r.direction == trace_pb2.DIRECTION_ENV_TO_AGENT and r.envelope.WhichOneof("body") == "step"]
problems, last = [], {}
paused_down = paused_up = queued = 0
for s in steps:
    n = len(s.nodes) or len(s.node_columns.heartbeats) // 16  # v1 node states, or v2 columns
    ids = sorted(l.link_id for l in s.links)
    if ids != list(range(2 * n)):
        problems.append(f"step {s.step_index}: link ids {ids[:6]}... not 0..{2 * n - 1}")
        break
    for l in s.links:
        if l.link_id != 2 * l.node_id + (0 if l.uplink else 1):
            problems.append(f"link {l.link_id}: node {l.node_id} uplink {l.uplink}")
        if l.uplink and l.ecn_marks:
            problems.append(f"uplink {l.link_id} counts ECN marks (NICs do not mark)")
        prev = last.get(l.link_id)
        if prev and (l.ecn_marks < prev[0] or l.pause_frames < prev[1] or l.drops < prev[2]):
            problems.append(f"link {l.link_id}: a counter went back at step {s.step_index}")
        last[l.link_id] = (l.ecn_marks, l.pause_frames, l.drops)
        paused_down += l.pfc_paused and not l.uplink and l.node_id == 0
        paused_up += l.pfc_paused and l.uplink
        queued += l.queue_bytes > 0
if not steps:
    problems.append("no Step in the trace")
if not paused_down:
    problems.append("the slow receiver's downlink (link 1) was never PAUSEd at a Step")
print(f"{len(steps)} Steps; downlink to node 0 paused at {paused_down}, senders' uplinks paused "
      f"{paused_up} link-Steps, queues non-empty {queued} link-Steps")
if problems:
    print("; ".join(problems[:5]))
    sys.exit(1)
PY
)"; then
    pass "link state: $verdict"
  else
    echo "      $verdict"
    fail "PfcStorm Steps do not carry link state with the documented meaning"
  fi
fi

echo "== 10. scripts/omnetpp-eval.sh: policies side by side on held-out runs, outcomes from the .sca files"
if [ -x "$bin" ]; then
  if MALCOLM_AGENT_SERVER_BIN="$bin" bash "$root/scripts/omnetpp-eval.sh" --runs 3..4 --sim-time 3ms \
       --policies po2+fcfs,slack-greedy --out "$out/eval" >"$out/eval.log" 2>&1 &&
     verdict="$(python3 - "$out/eval/summary.csv" "$out/eval/eval.csv" <<'PY'
import csv, sys
s = {r["policy"]: r for r in csv.DictReader(open(sys.argv[1]))}
runs = list(csv.DictReader(open(sys.argv[2])))
ok = (set(s) == {"po2-fcfs", "slack-greedy"} and len(runs) == 4
      and all(int(r["tasks"]) > 100 for r in runs)
      and float(s["slack-greedy"]["miss_rate"]) < float(s["po2-fcfs"]["miss_rate"]))
print(f"slack-greedy {100 * float(s['slack-greedy']['miss_rate']):.1f}% vs Po2 + FCFS "
      f"{100 * float(s['po2-fcfs']['miss_rate']):.1f}% missed, {len(runs)} runs")
sys.exit(0 if ok else 1)
PY
)"; then
    pass "omnetpp-eval: $verdict"
  else
    tail -n 8 "$out/eval.log"
    fail "omnetpp-eval did not give two policies x two runs with slack-greedy ahead of Po2 + FCFS (${verdict:-no summary})"
  fi
else
  echo "      (skipped: needs the agent-server binary)"
fi

if [ "$failures" -gt 0 ]; then
  echo "omnetpp-check: $failures check(s) failed (logs and results in $out)"
  exit 1
fi
echo "omnetpp-check: all checks passed (results in $out)"
