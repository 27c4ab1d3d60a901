#!/usr/bin/env bash
# Evaluates policies side by side in OMNeT++: for each policy an agent server (eval mode, or a
# learner's checkpoint frozen) serves Cmdenv runs of one ini config on held-out run numbers;
# the outcome comes from each run's .sca file (EdfScheduler's completed/missed/dropped counts).
#   scripts/omnetpp-eval.sh [--config Hetero] [--runs 5..7] [--policies po2+fcfs,slack-greedy]
#                           [--checkpoint F] [--sim-time 20ms] [--out DIR]
# A policy spec ending in `+fcfs` runs the servers FCFS instead of the config's discipline.
# Writes DIR/eval.csv (one row per policy and run), DIR/summary.csv and DIR/summary.md (mean
# miss rate with its 95% Student-t interval over runs). Run numbers select the seeds
# (seed-set = ${repetition}); choose ones no training run used. Needs OMNeT++ (OMNETPP_ROOT or
# opp_run on PATH); exits 0 with a message where it is absent.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
config=Hetero runs=5..7 policies=po2+fcfs,slack-greedy checkpoint="" simtime=20ms out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --policies) policies="$2"; shift 2 ;;
    --checkpoint) checkpoint="$2"; shift 2 ;;
    --sim-time) simtime="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h|--help) sed -n 2,10p "$0"; exit 0 ;;
    *) echo "omnetpp-eval: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=scripts/omnetpp-env.sh
source "$root/scripts/omnetpp-env.sh"
malcolm_find_omnetpp || exit 0
malcolm_build_modules "$root"
bin="${MALCOLM_AGENT_SERVER_BIN:-$root/target/release/agent-server}"
[ -x "$bin" ] || { echo "omnetpp-eval: $bin not built (cargo build --release -p agent-server)" >&2; exit 1; }
out="${out:-$root/results/omnetpp-eval-$config-$(date +%s)}"
mkdir -p "$out"
first="${runs%..*}" last="${runs#*..}"
repeat=$((last + 1))
# Per-run wall-clock bound: a run that hangs (it should not: every bridge wait has a timeout)
# is killed and reported, not waited for.
RUN_TIMEOUT_S="${MALCOLM_RUN_TIMEOUT_S:-900}"

labels=()
IFS=',' read -r -a specs <<<"$policies"
[ -n "$checkpoint" ] && specs=("malcolm-strict" "${specs[@]}")
agent_pid=""
cleanup() { [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null; true; }
trap cleanup EXIT INT TERM
for spec in "${specs[@]}"; do
  policy="${spec%+fcfs}" label="${spec//+/-}" discipline=()
  [ "$policy" != "$spec" ] && discipline=('--**.scheduler.discipline="fcfs"')
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  ep="tcp://127.0.0.1:$port"
  args=(serve --bind "$ep" --control 127.0.0.1:0 --policy "$policy" --mode eval)
  if [ "$policy" = malcolm-strict ]; then args+=(--checkpoint "$checkpoint"); fi
  "$bin" --log warn "${args[@]}" >"$out/$label-agent.log" 2>&1 &
  agent_pid=$!
  sleep 1
  kill -0 "$agent_pid" 2>/dev/null || { cat "$out/$label-agent.log"; echo "omnetpp-eval: agent server for $label did not start" >&2; exit 1; }
  for r in $(seq "$first" "$last"); do
    printf 'omnetpp-eval: %s, %s run %s ... ' "$label" "$config" "$r"
    t0=$(date +%s)
    if (cd "$root/ini" && timeout "$RUN_TIMEOUT_S" "$OPP_RUN" -u Cmdenv -l "$MALCOLM_OMNETPP_LIB" -n "$root/ned" \
          -c "$config" -r "$r" "--repeat=$repeat" "--sim-time-limit=$simtime" "--result-dir=$out/$label" "${discipline[@]}" \
          "--**.coordinator.agentEndpoint=\"$ep\"" '--**.coordinator.fallbackPolicy=""' omnetpp.ini) \
          >"$out/$label-run$r.log" 2>&1; then
      echo "$(( $(date +%s) - t0 )) s"
    else
      echo "failed (log: $out/$label-run$r.log)"
      tail -n 5 "$out/$label-run$r.log"
      exit 1
    fi
  done
  kill "$agent_pid" 2>/dev/null; wait "$agent_pid" 2>/dev/null || true
  agent_pid=""
  labels+=("$label")
done

for policy in "${labels[@]}"; do
  "$OPP_SCAVETOOL" export -F CSV-R -o "$out/$policy-scalars.csv" -f 'type =~ scalar' "$out/$policy"/*.sca >/dev/null 2>&1
done
python3 - "$out" "$config" "$simtime" "${labels[@]}" <<'PY'
import csv, math, re, sys
from collections import defaultdict
out, config, simtime, labels = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
# Student-t 97.5% quantiles by degrees of freedom (the interval over runs).
T = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}
rows = []
for label in labels:
    per_run = defaultdict(lambda: defaultdict(float))
    with open(f"{out}/{label}-scalars.csv") as f:
        for r in csv.DictReader(f):
            if r["type"] != "scalar" or not re.fullmatch(r".*\.scheduler", r["module"]):
                continue
            m = re.fullmatch(r"(completed|missed|dropped):count", r["name"])
            if m:
                per_run[r["run"]][m.group(1)] += float(r["value"])
    for run, c in sorted(per_run.items()):
        total = c["completed"] + c["missed"] + c["dropped"]
        rows.append({"policy": label, "run": run, "tasks": int(total), "on_time": int(c["completed"]),
                     "late": int(c["missed"]), "dropped": int(c["dropped"]),
                     "miss_rate": (c["missed"] + c["dropped"]) / total if total else float("nan")})
with open(f"{out}/eval.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
summary = []
for label in labels:
    x = [r["miss_rate"] for r in rows if r["policy"] == label]
    d = [r["dropped"] / r["tasks"] for r in rows if r["policy"] == label]
    n = len(x)
    mean = sum(x) / n
    half = T.get(n - 1, 1.96) * math.sqrt(sum((v - mean) ** 2 for v in x) / (n - 1) / n) if n > 1 else float("nan")
    summary.append({"policy": label, "runs": n, "miss_rate": mean, "miss_rate_ci95": half,
                    "drop_rate": sum(d) / n, "tasks_per_run": sum(r["tasks"] for r in rows if r["policy"] == label) / n})
with open(f"{out}/summary.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(summary[0]))
    w.writeheader()
    w.writerows(summary)
md = [f"# OMNeT++ `{config}`: policies side by side", "",
      f"Cmdenv runs of `[{config}]` ({simtime} of simulated time each), held-out run numbers; miss rate = "
      "(late + dropped) / all tasks the EDF schedulers finished or dropped (their .sca counts); "
      "± is the 95% interval over runs.", "",
      "| policy | runs | miss rate | dropped | tasks per run |", "|---|---:|---:|---:|---:|"]
for s in summary:
    md.append(f"| {s['policy']} | {s['runs']} | {100 * s['miss_rate']:.3f}% ± {100 * s['miss_rate_ci95']:.3f} | "
              f"{100 * s['drop_rate']:.2f}% | {s['tasks_per_run']:.0f} |")
open(f"{out}/summary.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
PY
echo "omnetpp-eval: results in $out"
