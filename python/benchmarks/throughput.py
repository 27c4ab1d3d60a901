#!/usr/bin/env python3
"""Throughput of the Python adapter next to the Rust agent server, on the same env.

Both sides serve ``agent-server env`` processes (the embedded rack simulator) running the same
scenario and seeds with the same trivial policy, round-robin, so the simulators do exactly the
same work (the script checks the env reports match) and the difference is the agent side:
  rust:    agent-server serve --policy round-robin  (the Rust bridge and session code)
  python:  RackVectorEnv with a Python round-robin port (malcolm_gym.baselines.RoundRobin)
Steps/s = Steps served / wall time from starting the env processes to their last EpisodeEnd.
The two are measured alternately, --rounds times each, and the medians compared.

    python python/benchmarks/throughput.py            # hetero, 100k tasks per env, 3 rounds
    python python/benchmarks/throughput.py --envs 2   # two envs per side, concurrently
    python python/benchmarks/throughput.py --quick    # a smoke run (what the tests run)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from malcolm_gym import RackVectorEnv, find_agent_server
from malcolm_gym.baselines import RoundRobin

#: Bound on one measured run, and on the server's start and stop.
RUN_TIMEOUT_S = 600


def rust_run(binary: str, scenario: str, envs: int, seed: int, tmp: Path) -> tuple[int, float, list]:
    endpoint = f"ipc://{tmp}/rust.sock"
    serve = subprocess.Popen(
        [binary, "serve", "--bind", endpoint, "--control", "127.0.0.1:0", "--policy", "round-robin",
         "--mode", "eval"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # The server must be up before the clock starts (libtorch loads in ~a second).
        deadline = time.monotonic() + 30
        while not os.path.exists(f"{tmp}/rust.sock"):
            if serve.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("agent-server serve did not start")
            time.sleep(0.01)
        reports = [tmp / f"rust-{i}.jsonl" for i in range(envs)]
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                [binary, "env", "--connect", endpoint, "--scenario", scenario, "--seed", str(seed + i),
                 "--episodes", "1", "--report", str(reports[i])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for i in range(envs)
        ]
        for p in procs:
            if p.wait(RUN_TIMEOUT_S) != 0:
                raise RuntimeError(f"agent-server env exited with {p.returncode}")
        wall = time.perf_counter() - t0
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(30)
    rows = [json.loads(r.read_text().splitlines()[0]) for r in reports]
    return sum(r["steps"] for r in rows), wall, rows


def python_run(binary: str, scenario: str, envs: int, seed: int) -> tuple[int, float, list]:
    t0 = time.perf_counter()
    vec = RackVectorEnv(envs, scenario, simulator="rack-sim", seed=seed, agent_server=binary)
    try:
        obs, infos = vec.reset()
        policies = [RoundRobin(vec.hub.rack) for _ in range(envs)]
        width = vec.single_action_space.shape[0]
        actions = np.zeros((envs, width), dtype=np.int64)
        done = np.zeros(envs, dtype=bool)
        steps = 0
        while not done.all():
            for i in range(envs):
                if not done[i]:
                    t = policies[i].decide(infos["step"][i])
                    actions[i, : len(t)] = t
            obs, _, term, trunc, infos = vec.step(actions)
            steps += int((~done).sum())
            done |= term | trunc
        wall = time.perf_counter() - t0
        # The envs write their reports once their sessions are closed, after the EpisodeEnd.
        vec.hub.pump(lambda: all(vec.env_reports(i) for i in range(envs)), 30, "Close and reports")
        rows = [vec.env_reports(i)[0] for i in range(envs)]
    finally:
        vec.close()
    return steps, wall, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenario", default=None, help="embedded scenario (default hetero with 100k tasks)")
    ap.add_argument("--envs", type=int, default=1, help="env processes per side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small episodes, one round (smoke test)")
    a = ap.parse_args()
    scenario = a.scenario or ("hetero:tasks=3000,warmup=0" if a.quick else "hetero:tasks=100000,warmup=0")
    rounds = 1 if a.quick else a.rounds
    binary = find_agent_server()
    tmp = Path(tempfile.mkdtemp(prefix="mg-bench-"))
    rust, py = [], []
    try:
        for k in range(rounds):
            steps_r, wall_r, rep_r = rust_run(binary, scenario, a.envs, a.seed, tmp)
            steps_p, wall_p, rep_p = python_run(binary, scenario, a.envs, a.seed)
            # Same scenario, seeds and placements: the simulators did the same work.
            for x, y in zip(rep_r, rep_p):
                if (x["steps"], x["miss_rate"], x["events"]) != (y["steps"], y["miss_rate"], y["events"]):
                    print(f"error: the two sides' envs diverged: {x['steps']} vs {y['steps']} steps", file=sys.stderr)
                    return 1
            rust.append(steps_r / wall_r)
            py.append(steps_p / wall_p)
            print(f"round {k + 1}: {steps_r} Steps; rust server {rust[-1]:,.0f} steps/s, "
                  f"python adapter {py[-1]:,.0f} steps/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r, p = statistics.median(rust), statistics.median(py)
    print(f"scenario {scenario}, {a.envs} env(s) per side, round-robin, median of {rounds} round(s):")
    print(f"  rust agent-server serve: {r:,.0f} steps/s")
    print(f"  python adapter:          {p:,.0f} steps/s")
    print(f"  adapter / rust: {p / r:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
