#!/usr/bin/env bash
# Smoke test of `agent-server experiment`: runs every experiment at --quick size into a temp
# dir and checks that the results are well formed (CSV headers and row counts, PNG files,
# markdown tables, config.json). Prints one verdict line; exit status 0 when all is well.
# Usage: scripts/experiments-quick.sh [--keep] [--out DIR]   (about 5 minutes on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/.."
keep=0
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,5p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
# shellcheck source=/dev/null
source scripts/env.sh
if [ -z "${MALCOLM_SKIP_BUILD:-}" ]; then
  cargo build --release -q -p agent-server
fi
if [ -z "$out" ]; then
  out="$(mktemp -d /tmp/experiments-quick.XXXXXX)"
  [ "$keep" = 1 ] || trap 'rm -rf "$out"' EXIT
fi
start=$(date +%s)
log="$out/run.log"
mkdir -p "$out"
if ! target/release/agent-server --log warn experiment all --quick --out "$out/all" >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "experiments-quick: FAILED (agent-server experiment all --quick exited non-zero; log above)"
  exit 1
fi
secs=$(( $(date +%s) - start ))
python3 - "$out/all" "$secs" <<'PY'
import csv, json, os, sys
root, secs = sys.argv[1], sys.argv[2]
seeds, train_seeds = 2, 2
# experiment -> (points, extra CSVs, PNGs)
spec = {
    "hetero": (8, [], ["latency_cdf.png", "margin_cdf.png", "learning_curves.png"]),
    "barrier-ablation": (3 * train_seeds,
        ["learners.csv", "variants.csv", "margin_cdf.csv", "learning_curve_barrier.csv",
         "learning_curve_linear.csv", "learning_curve_step.csv"],
        ["margin_cdf.png", "learning_curves.png"]),
    "heavy-tail": (15, [], ["miss_vs_alpha.png", "p99_vs_alpha.png"]),
    "staleness": (20, [], ["goodput_vs_heartbeat.png", "miss_vs_heartbeat.png"]),
    "load": (28, [], ["p999_vs_load.png", "miss_vs_load.png"]),
    "microburst": (6, [], ["latency_cdf.png", "margin_cdf.png"]),
    "cvar": (3, [], ["latency_cdf.png", "learning_curves.png"]),
}
errors, checked = [], 0

def read_csv(path, need):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError("empty")
    head = rows[0]
    for c in need:
        if c not in head:
            raise ValueError(f"no column {c!r} in header {head}")
    for i, r in enumerate(rows[1:], 2):
        if len(r) != len(head):
            raise ValueError(f"line {i} has {len(r)} fields, header {len(head)}")
    return head, rows[1:]

for exp, (points, extra, pngs) in spec.items():
    d = os.path.join(root, exp)
    def fail(msg):
        errors.append(f"{exp}: {msg}")
    if not os.path.isdir(d):
        fail("folder missing"); continue
    try:
        for name, n in (("eval.csv", points * seeds), ("summary.csv", points)):
            head, rows = read_csv(os.path.join(d, name), ["label", "miss_rate", "goodput_per_s"])
            checked += 1
            if len(rows) != n:
                fail(f"{name}: {len(rows)} rows, expected {n}")
            mi = head.index("miss_rate")
            for r in rows:
                v = float(r[mi])
                if not (0.0 <= v <= 1.0):
                    fail(f"{name}: miss_rate {v} outside [0, 1]"); break
        for name in extra:
            _, rows = read_csv(os.path.join(d, name), [])
            checked += 1
            if not rows:
                fail(f"{name}: no rows")
        for name in pngs:
            p = os.path.join(d, name)
            with open(p, "rb") as f:
                sig = f.read(8)
            checked += 1
            if sig != b"\x89PNG\r\n\x1a\n" or os.path.getsize(p) < 2000:
                fail(f"{name}: not a PNG figure")
        md = open(os.path.join(d, "summary.md")).read()
        checked += 1
        if "|---" not in md or "Regenerate:" not in md or "Claim" not in md:
            fail("summary.md has no table, regenerate command or claims line")
        cfg = json.load(open(os.path.join(d, "config.json")))
        checked += 1
        if "agent-server experiment " + exp not in cfg.get("command", ""):
            fail("config.json has no regenerate command")
    except Exception as e:  # missing file, bad number, bad JSON
        fail(f"{type(e).__name__}: {e}")
if errors:
    print(f"experiments-quick: FAILED ({len(errors)} problems in {root}): " + "; ".join(errors))
    sys.exit(1)
print(f"experiments-quick: OK ({len(spec)} experiments, {checked} files well formed, {secs} s)")
PY
