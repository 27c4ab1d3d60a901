#!/usr/bin/env python3
"""A PyTorch agent trained through the Gymnasium adapter on the `hetero` rack (2 fast : 3 slow
nodes, tight deadlines), evaluated on held-out seeds next to the Rust baselines.

The agent is CleanRL's DQN loop (one file, epsilon-greedy, replay buffer, Huber loss, Adam)
with one decision per pending task: a shared Q-network scores every (task, candidate node)
pair from what the task's origin knows (the task, the origin's fresh state, its stale
heartbeat view of the others, the speed and cores of each node, and the work this origin sent
each node recently) and the task goes to the best node. Each decision is scored by its own
task's barrier reward (design.md section 7) when the outcome comes back (``info["outcomes"]``,
joined by task id): with per-task deadline rewards the discount is 0, so the Q-value is the
expected reward of the task itself and there is no bootstrapping or target network.

    python python/examples/dqn_hetero.py                  # ~4 min of training, 3 held-out seeds
    python python/examples/dqn_hetero.py --minutes 10 --eval-seeds 5
    python python/examples/dqn_hetero.py --quick          # smoke run (the tests run this)

The baselines' figures come from ``agent-server eval`` on the same scenario and seeds (the
same episodes), run by this script; the agent's miss rate is the env's own report (warm-up
excluded), the same figure eval prints.
"""

from __future__ import annotations

import argparse
import csv
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from malcolm_gym import RackEnv, find_agent_server
from malcolm_gym import observation as ob

#: agent-server eval's held-out seeds (job.rs EVAL_SEED_BASE): training never sees them.
EVAL_SEED_BASE = 900_000_001
#: Training episodes: short, so the agent sees many starts (as agent-server train does).
TRAIN_SCENARIO = "hetero:tasks=20000,warmup=2000"
#: Held-out evaluation: longer episodes of the same rack, for agent and baselines alike.
EVAL_SCENARIO = "hetero:tasks=50000,warmup=5000"
BASELINES = "po2+fcfs,jsq,slack-greedy,tod-n,random"
#: One-way network delay of rack-sim (Hello parameter one_way_ns), us: the cost of moving a task.
DEFAULT_ONE_WAY_US = 2.5
#: Rewards are divided by this before regression: the barrier spans [-1000, ~1.6].
REWARD_SCALE = 100.0
FEATURES = 18


def slog(x):
    """Signed log scaling for times in us: about [-3, 3] over the range that matters."""
    return np.sign(x) * np.log1p(np.abs(x) / 10.0) / 2.0


class OriginMemory:
    """Work per core (us) each origin sent each node recently, decaying as the nodes work it off:
    the agent's own placements, which the stale heartbeats do not show yet."""

    def __init__(self, n):
        self.backlog = np.zeros((n, n))
        self.t_us = None

    def advance(self, now_us):
        if self.t_us is not None:
            self.backlog = np.maximum(self.backlog - (now_us - self.t_us), 0.0)
        self.t_us = now_us


def features(obs, memory, one_way_us):
    """(K tasks, N nodes, FEATURES) for the real tasks of an observation."""
    k = int(obs["task_mask"].sum())
    tasks, nodes, gst = obs["tasks"][:k], obs["nodes"], obs["gst"]
    n = nodes.shape[0]
    origin = tasks[:, ob.T_ORIGIN].astype(np.int64)
    view = gst[origin].copy()  # (K, N, 8): the origin's stale view of every node
    fresh = nodes[origin]  # the origin sees itself fresh
    own = view[np.arange(k), origin]
    own[:, ob.G_KNOWN], own[:, ob.G_AGE] = 1.0, 0.0
    own[:, ob.G_PANIC], own[:, ob.G_IDLE] = fresh[:, ob.N_PANIC], fresh[:, ob.N_IDLE]
    own[:, ob.G_RHO], own[:, ob.G_P10], own[:, ob.G_P50] = fresh[:, ob.N_RHO], fresh[:, ob.N_P10], fresh[:, ob.N_P50]
    own[:, ob.G_QUEUE] = fresh[:, ob.N_QUEUE]
    view[np.arange(k), origin] = own
    speed, cores = nodes[:, ob.N_SPEED], nodes[:, ob.N_CORES]
    slack, service = tasks[:, ob.T_SLACK, None], tasks[:, ob.T_SERVICE, None]
    on_node = service / speed[None, :]
    is_origin = origin[:, None] == np.arange(n)[None, :]
    move = np.where(is_origin, 0.0, one_way_us)
    queue = view[..., ob.G_QUEUE]
    f = np.empty((k, n, FEATURES), np.float32)
    f[..., 0] = slog(slack)
    f[..., 1] = slog(service)
    f[..., 2] = slog(on_node)
    f[..., 3] = slog(slack - on_node - move)
    f[..., 4] = is_origin
    f[..., 5] = speed[None, :]
    f[..., 6] = np.log(cores)[None, :] / 3.0
    f[..., 7] = view[..., ob.G_KNOWN]
    f[..., 8] = slog(view[..., ob.G_AGE])
    f[..., 9] = view[..., ob.G_PANIC]
    f[..., 10] = view[..., ob.G_IDLE]
    f[..., 11] = np.log1p(view[..., ob.G_RHO])
    f[..., 12] = slog(view[..., ob.G_P10])
    f[..., 13] = slog(view[..., ob.G_P50])
    f[..., 14] = np.log1p(queue) / 3.0
    f[..., 15] = np.log1p(np.maximum(queue - cores[None, :], 0.0)) / 3.0
    f[..., 16] = slog(memory.backlog[origin])
    f[..., 17] = tasks[:, ob.T_CLASS, None]
    return f, origin, on_node


class QNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


class Agent:
    def __init__(self, args, n_nodes, one_way_us):
        self.q = QNetwork()
        self.opt = torch.optim.Adam(self.q.parameters(), lr=args.lr)
        self.buffer_x = np.zeros((args.buffer, FEATURES), np.float32)
        self.buffer_r = np.zeros(args.buffer, np.float32)
        self.size = self.pos = 0
        self.pending = {}  # task id -> features of its chosen (task, node)
        self.args = args
        self.n = n_nodes
        self.one_way_us = one_way_us
        self.rng = np.random.default_rng(args.seed)

    def act(self, obs, memory, epsilon):
        f, origin, on_node = features(obs, memory, self.one_way_us)
        k = f.shape[0]
        if k == 0:
            return [], f
        with torch.no_grad():
            q = self.q(torch.from_numpy(f)).numpy()  # (K, N)
        targets = q.argmax(axis=1)
        explore = self.rng.random(k) < epsilon
        targets[explore] = self.rng.integers(0, self.n, explore.sum())
        for i, j in enumerate(targets):
            memory.backlog[origin[i], j] += on_node[i, j] / obs["nodes"][j, ob.N_CORES]
        return targets.tolist(), f

    def remember(self, task_ids, f, targets):
        for i, (tid, j) in enumerate(zip(task_ids, targets)):
            self.pending[tid] = f[i, j]

    def learn_from(self, outcomes):
        for tid, r in zip(outcomes["task_id"], outcomes["reward"]):
            x = self.pending.pop(int(tid), None)
            if x is None:
                continue
            self.buffer_x[self.pos], self.buffer_r[self.pos] = x, r / REWARD_SCALE
            self.pos = (self.pos + 1) % len(self.buffer_r)
            self.size = min(self.size + 1, len(self.buffer_r))

    def update(self):
        if self.size < self.args.batch:
            return None
        idx = self.rng.integers(0, self.size, self.args.batch)
        x = torch.from_numpy(self.buffer_x[idx])
        r = torch.from_numpy(self.buffer_r[idx])
        loss = nn.functional.smooth_l1_loss(self.q(x), r)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()


def play_episode(env, agent, *, seed=None, epsilon=0.0, learn=False, deadline=None):
    """One episode; returns the env's episode stats (None if the deadline cut it short)."""
    obs, info = env.reset(seed=seed)
    memory = OriginMemory(agent.n)
    width = env.action_space.shape[0]
    action = np.zeros(width, dtype=np.int64)
    steps = 0
    while True:
        memory.advance(info["sim_time_ns"] / 1e3)
        targets, f = agent.act(obs, memory, epsilon)
        if learn:
            agent.remember([t.task_id for t in info["step"].tasks], f, targets)
        action[:] = 0
        action[: len(targets)] = targets
        obs, reward, term, trunc, info = env.step(action)
        steps += 1
        if learn:
            agent.learn_from(info["outcomes"])
            if steps % agent.args.train_every == 0:
                agent.update()
        if term or trunc:
            agent.pending.clear()
            return info["episode_stats"]
        if deadline is not None and time.monotonic() > deadline:
            return None


def rust_baselines(binary, scenario, seeds, out):
    subprocess.run(
        [binary, "eval", "--scenario", scenario, "--policies", BASELINES, "--seeds", str(seeds), "--out", str(out)],
        check=True, capture_output=True, timeout=3600,
    )
    with open(out / "eval.csv") as f:
        rows = list(csv.DictReader(f))
    by_label = {}
    for r in rows:
        by_label.setdefault(r["label"], []).append(float(r["miss_rate"]))
    return by_label


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=4.0, help="training budget (wall clock)")
    ap.add_argument("--eval-seeds", type=int, default=3)
    ap.add_argument("--train-scenario", default=TRAIN_SCENARIO)
    ap.add_argument("--eval-scenario", default=EVAL_SCENARIO)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--buffer", type=int, default=200_000)
    ap.add_argument("--train-every", type=int, default=4, help="Steps between gradient updates")
    ap.add_argument("--eps-start", type=float, default=0.3)
    ap.add_argument("--eps-end", type=float, default=0.02)
    ap.add_argument("--quick", action="store_true", help="20 s of training on small episodes, 1 seed")
    args = ap.parse_args()
    if args.quick:
        args.minutes = min(args.minutes, 1 / 3)
        args.train_scenario = "hetero:tasks=2000,warmup=200"
        args.eval_scenario = "hetero:tasks=3000,warmup=300"
        args.eval_seeds = 1
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(1)  # the env process needs the other core
    binary = find_agent_server()

    env = RackEnv(args.train_scenario, simulator="rack-sim", seed=args.seed, agent_server=binary)
    one_way_us = float(env.hello.parameters.get("one_way_ns", DEFAULT_ONE_WAY_US * 1e3)) / 1e3
    agent = Agent(args, len(env.hello.nodes), one_way_us)
    budget = args.minutes * 60
    t0 = time.monotonic()
    episode = 0
    print(f"training on {args.train_scenario} for {args.minutes:.1f} min")
    while time.monotonic() - t0 < budget:
        frac = (time.monotonic() - t0) / budget
        eps = args.eps_end + (args.eps_start - args.eps_end) * max(0.0, 1 - 2 * frac)
        stats = play_episode(env, agent, epsilon=eps, learn=True, deadline=t0 + budget)
        if stats is None:
            break
        episode += 1
        print(f"  episode {episode:3d} ({time.monotonic() - t0:5.0f} s): epsilon {eps:.2f}, "
              f"miss rate {stats['miss_rate'] * 100:5.1f}% of {stats['outcomes']} tasks, return {stats['return']:.0f}")
    env.close()

    seeds = [EVAL_SEED_BASE + i for i in range(args.eval_seeds)]
    print(f"evaluating on {args.eval_scenario}, held-out seeds {seeds[0]}..{seeds[-1]}")
    agent.q.eval()
    env = RackEnv(args.eval_scenario, simulator="rack-sim", seed=seeds[0], agent_server=binary)
    ours = []
    try:
        for s in seeds:
            play_episode(env, agent, seed=s)
            env.reset()  # the env writes its report once the episode's session is closed
            (report,) = [r for r in env.env_reports() if r["seed"] == s]
            ours.append(report["miss_rate"])
    finally:
        env.close()
    with tempfile.TemporaryDirectory() as d:
        baselines = rust_baselines(binary, args.eval_scenario, args.eval_seeds, Path(d))
    print(f"\nmiss rate on {args.eval_scenario}, {args.eval_seeds} held-out seed(s) (mean, per seed):")
    print("| policy | miss rate | per seed |\n|---|---|---|")
    rows = [("python DQN (EDF)", ours)] + sorted(baselines.items(), key=lambda kv: np.mean(kv[1]))
    for label, v in rows:
        print(f"| {label} | {np.mean(v) * 100:.2f}% | {', '.join(f'{x * 100:.2f}' for x in v)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
