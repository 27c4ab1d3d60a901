"""Parity with the Rust agent: Python ports of the random and slack-greedy baselines, driven
through the adapter against ``agent-server env``, reproduce on the same seeds the miss rates
``agent-server eval`` gets for the Rust baselines, and slack-greedy makes the same placements
as the Rust one serving the same env (read back from ``agent-server serve --record``).

Everything here is deterministic: the same seed gives the same tasks, and a port that chooses
like the Rust policy gives the same report to the last bit. A port or an adapter that changed
a single placement of a few thousand would show."""

import csv
import subprocess
from pathlib import Path

import numpy as np
import pytest

from malcolm.bridge.v1 import trace_pb2
from malcolm_gym import RackEnv
from malcolm_gym.baselines import RandomPolicy, SlackGreedy
from malcolm_gym.trace import read_trace

#: Long enough for queues, heartbeats and misses to matter (hetero at its default load misses a
#: few percent of deadlines under slack-greedy), short enough for CI: a few seconds per run.
SCENARIO = "hetero:tasks=3000,warmup=300"
#: agent-server eval's first held-out seeds (job.rs EVAL_SEED_BASE): the same episodes.
EVAL_SEEDS = [900_000_001, 900_000_002]
PORTS = {"random": RandomPolicy, "slack-greedy": SlackGreedy}
PROCESS_TIMEOUT_S = 120


def run_port(agent_server, policy_cls, seed):
    """One episode of ``policy_cls`` through the adapter; the env's report and the targets of
    every Step."""
    env = RackEnv(SCENARIO, simulator="rack-sim", seed=seed, agent_server=agent_server)
    try:
        obs, info = env.reset(seed=seed)
        policy = policy_cls(env.hello, env.hello.seed)
        width = env.action_space.shape[0]
        placements = []
        while True:
            targets = policy.decide(info["step"])
            placements.append(targets)
            action = np.zeros(width, dtype=np.int64)
            action[: len(targets)] = targets
            obs, _, term, trunc, info = env.step(action)
            if term or trunc:
                break
        # The env writes its report when the episode's session closes: after the next Hello.
        env.reset()
        (report,) = [r for r in env.env_reports() if r["seed"] == seed]
        return report, placements
    finally:
        env.close()


@pytest.fixture(scope="module")
def rust_eval(agent_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    subprocess.run(
        [agent_server, "eval", "--scenario", SCENARIO, "--policies", ",".join(PORTS),
         "--seeds", str(len(EVAL_SEEDS)), "--out", str(out)],
        check=True, timeout=PROCESS_TIMEOUT_S, capture_output=True,
    )
    with open(out / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    return {(r["policy"], int(r["seed"])): r for r in rows}


@pytest.mark.parametrize("seed", EVAL_SEEDS)
@pytest.mark.parametrize("policy", list(PORTS))
def test_ports_reproduce_the_rust_miss_rates(agent_server, rust_eval, policy, seed):
    report, _ = run_port(agent_server, PORTS[policy], seed)
    rust = rust_eval[(policy, seed)]
    assert report["finished"] == int(rust["finished"])
    # Same placements, same simulation: the figures agree to the last bit.
    assert report["miss_rate"] == float(rust["miss_rate"]), (report["miss_rate"], rust["miss_rate"])
    assert report["goodput_per_s"] == float(rust["goodput_per_s"])
    # Latency figures count drops as censored at +infinity; the report writes that as "inf".
    assert float(report["latency"]["p99_ns"]) / 1e3 == float(rust["p99_us"])
    if policy == "slack-greedy":
        assert 0.0 < report["miss_rate"] < 0.5  # a figure worth comparing


def test_slack_greedy_places_every_task_like_the_rust_server(agent_server, short_tmp):
    seed = EVAL_SEEDS[0]
    tmp = Path(short_tmp)
    endpoint = f"ipc://{tmp}/rust.sock"
    trace_path = tmp / "slack-greedy.trace"
    serve = subprocess.Popen(
        [agent_server, "serve", "--bind", endpoint, "--control", "127.0.0.1:0", "--policy", "slack-greedy",
         "--mode", "eval", "--record", str(trace_path)],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "serve.log", "wb"),
    )
    try:
        subprocess.run(
            [agent_server, "env", "--connect", endpoint, "--scenario", SCENARIO, "--seed", str(seed),
             "--episodes", "1", "--timeout-s", "30"],
            check=True, timeout=PROCESS_TIMEOUT_S, capture_output=True,
        )
    finally:
        serve.send_signal(2)  # Ctrl-C: the server flushes its trace and exits
        serve.wait(PROCESS_TIMEOUT_S)
    header, records = read_trace(trace_path)
    assert header.policy == "slack-greedy"
    rust = [list(r.envelope.placement.targets) for r in records
            if r.direction == trace_pb2.DIRECTION_AGENT_TO_ENV and r.envelope.WhichOneof("body") == "placement"]
    _, python = run_port(agent_server, SlackGreedy, seed)
    assert len(python) == len(rust) > 1000
    first_diff = next((i for i, (a, b) in enumerate(zip(python, rust)) if a != b), None)
    assert first_diff is None, f"step {first_diff}: python {python[first_diff]} rust {rust[first_diff]}"
