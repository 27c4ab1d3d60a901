"""The hand-run scripts in their --quick mode: the throughput benchmark (it refuses to print a
ratio when the two sides' envs did not do the same work) and the learning example (trains,
evaluates on a held-out seed, prints the comparison with agent-server eval's baselines)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

PYTHON_DIR = Path(__file__).resolve().parents[1]
SCRIPT_TIMEOUT_S = 300


def run(script, agent_server):
    env = {**os.environ, "MALCOLM_AGENT_SERVER_BIN": agent_server}
    p = subprocess.run(
        [sys.executable, str(PYTHON_DIR / script), "--quick"],
        capture_output=True, text=True, timeout=SCRIPT_TIMEOUT_S, env=env,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_throughput_benchmark_quick(agent_server):
    out = run("benchmarks/throughput.py", agent_server)
    rust = float(re.search(r"rust agent-server serve: +([\d,]+) steps/s", out)[1].replace(",", ""))
    py = float(re.search(r"python adapter: +([\d,]+) steps/s", out)[1].replace(",", ""))
    ratio = float(re.search(r"adapter / rust: ([\d.]+)", out)[1])
    assert rust > 0 and py > 0
    assert ratio == pytest.approx(py / rust, abs=0.01)


def test_learning_example_quick(agent_server):
    out = run("examples/dqn_hetero.py", agent_server)
    assert re.search(r"episode +1 .*miss rate", out), out
    rows = dict(re.findall(r"^\| (.+?) \| ([\d.]+)% \|", out, re.M))
    # The agent and every baseline of agent-server eval, on the same held-out episode.
    assert {"python DQN (EDF)", "slack-greedy (EDF)", "po2 (FCFS)", "random (EDF)"} <= set(rows), out
    assert all(0.0 <= float(v) <= 100.0 for v in rows.values())
