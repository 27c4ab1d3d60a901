"""``RackEnv``: one bridge env session as a ``gymnasium.Env``.

The env (rack-sim's ``agent-server env``, an OMNeT++ run, or anything speaking bridge v1)
connects to the adapter's endpoint and drives the conversation; the adapter maps its lockstep
onto Gymnasium's:

- ``reset(seed=...)`` returns the first ``Step`` of a new episode as an observation (spaces in
  :mod:`malcolm_gym.observation`). A launched env is restarted with that seed when needed; an
  external env chooses its own seeds (``info["seed"]`` says which).
- ``step(action)`` sends the ``Placement`` (``action[i]`` is the target of the i-th pending
  task) and returns the next ``Step``, or the ``EpisodeEnd`` with ``terminated`` (the
  scenario's natural end) / ``truncated`` (a task or time limit: bootstrap from the state).
- The reward of a step is the sum of the per-task rewards (barrier, linear or step: design.md
  section 7, :mod:`malcolm_gym.rewards`) of the outcomes the env reported with it: tasks
  placed at earlier steps that finished or were dropped since. ``info["outcomes"]`` has each
  task's reward and ``decided_at_step``, for per-task credit assignment.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import weakref
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from malcolm.bridge.v1 import bridge_pb2 as pb
from . import rewards as rw
from .errors import EnvClosed
from .hub import Hub, Session
from .launcher import DEFAULT_ENV_TIMEOUT_S, EnvLauncher
from .observation import DEFAULT_MAX_TASKS, ObservationBuilder, make_spaces

log = logging.getLogger(__name__)

#: Bound on every wait for the env's next message (a Step takes microseconds to milliseconds to
#: simulate; an OMNeT++ step with heavy PFC traffic can take seconds).
DEFAULT_TIMEOUT_S = 30.0
#: Bound on the wait for an env's Hello (process start, libtorch loading, OMNeT++ set-up).
DEFAULT_HELLO_TIMEOUT_S = 60.0
#: Seed of the first episode of a launched env when none is given (agent-server env's default).
DEFAULT_SEED = 1

#: The columns of ``info["outcomes"]`` (one array each, one entry per task outcome) and their
#: dtypes; ``kind`` is a ``malcolm.bridge.v1.OutcomeKind`` (1 completed, 2 missed, 3 dropped).
OUTCOME_COLUMNS = {
    "task_id": np.uint64,
    "node_id": np.uint32,
    "origin": np.uint32,
    "kind": np.int32,
    "arrival_ns": np.uint64,
    "finish_ns": np.uint64,
    "deadline_ns": np.uint64,
    "latency_ns": np.uint64,
    "task_class": np.uint32,
    "decided_at_step": np.uint64,
    "reward": np.float64,
}


OUTCOME_DTYPE = np.dtype(list(OUTCOME_COLUMNS.items()))


def score_outcomes(session: Session, outcomes, cfg: rw.RewardConfig) -> tuple[float, dict]:
    """Per-task rewards of ``outcomes`` (a drop's uses the service it would have had on its node,
    known from the placement); returns the sum and the ``OUTCOME_COLUMNS`` arrays."""
    if not outcomes:
        table = np.empty(0, dtype=OUTCOME_DTYPE)
        return 0.0, {k: table[k] for k in OUTCOME_COLUMNS}
    in_flight, speed = session.in_flight, session.speed
    rows = []
    total = 0.0
    for o in outcomes:
        kind, finish, deadline, latency, node = o.kind, o.finish_ns, o.deadline_ns, o.latency_ns, o.node_id
        est_ns = in_flight.pop(o.task_id, 0)
        r = rw.task_reward(cfg, kind, finish, deadline, latency, est_ns / 1e3 / speed[node])
        total += r
        rows.append((o.task_id, node, o.origin, kind, o.arrival_ns, finish, deadline, latency,
                     getattr(o, "class"), o.decided_at_step, r))
    # One conversion, then a plain array per column (views of it).
    table = np.array(rows, dtype=OUTCOME_DTYPE)
    return total, {k: table[k] for k in OUTCOME_COLUMNS}


class EpisodeStats:
    """Counts of the outcomes of one episode as the agent saw them (every task it placed,
    warm-up included; the env's own report excludes the warm-up)."""

    def __init__(self):
        self.outcomes = self.on_time = self.missed = self.dropped = self.steps = 0
        self.ret = 0.0

    def add(self, rows: dict, reward: float) -> None:
        kinds = rows["kind"].tolist()
        self.outcomes += len(kinds)
        self.on_time += kinds.count(pb.OUTCOME_KIND_COMPLETED)
        self.missed += kinds.count(pb.OUTCOME_KIND_MISSED)
        self.dropped += kinds.count(pb.OUTCOME_KIND_DROPPED)
        self.ret += reward

    def as_dict(self) -> dict:
        return {
            "return": self.ret,
            "steps": self.steps,
            "outcomes": self.outcomes,
            "on_time": self.on_time,
            "missed": self.missed,
            "dropped": self.dropped,
            "miss_rate": (self.missed + self.dropped) / self.outcomes if self.outcomes else 0.0,
        }


def action_targets(action, num_tasks: int, nodes: int) -> list:
    """The first ``num_tasks`` entries of an action as checked node ids."""
    a = np.asarray(action)
    if a.ndim != 1:
        raise ValueError(f"action must be a 1-D array of target nodes, got shape {a.shape}")
    if a.shape[0] < num_tasks:
        raise ValueError(f"action has {a.shape[0]} targets for {num_tasks} pending tasks")
    a = a[:num_tasks]
    if not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.all(np.mod(a, 1) == 0)):
            raise ValueError(f"action must hold integer node ids, got dtype {a.dtype}")
        a = a.astype(np.int64)
    targets = a.tolist()
    if targets and (min(targets) < 0 or max(targets) >= nodes):
        bad = next(t for t in targets if t < 0 or t >= nodes)
        raise ValueError(f"target node {bad} is outside the rack of {nodes} nodes")
    return targets


def default_endpoint() -> tuple[str, str]:
    """A private ipc endpoint (and its folder, removed on close)."""
    d = tempfile.mkdtemp(prefix="malcolm-agent-")
    return f"ipc://{d}/agent.sock", d


class RackEnv(gym.Env):
    """A Malcolm-Strict rack (rack-sim or OMNeT++) as a Gymnasium env.

    Args:
        scenario: embedded scenario spec for a launched rack-sim (``hetero``,
            ``hetero:rho=0.6,tasks=20000``...), or the name an OMNeT++ ini config is matched by.
        endpoint: ZeroMQ endpoint to bind (``ipc:///path`` or ``tcp://host:port``; port ``*``
            picks one, see ``self.endpoint``). Default: a private ipc socket.
        launch: start the env process (True), or wait for an external env to connect (False).
        simulator: ``rack-sim``, ``omnetpp`` or ``auto`` (OMNeT++ when OMNETPP_ROOT is set).
        seed: seed of the first episode of a launched env (default 1).
        reward: ``barrier``, ``linear``, ``step``, a dict of ``RewardConfig`` fields, or one.
        max_tasks: pending tasks per Step the spaces have room for (a Step with more raises).
        timeout_s: bound on each wait for the env's next message.
        hello_timeout_s: bound on the wait for an env to connect.
        env_timeout_s: the launched env's own bound on each wait for the agent: the longest a
            learner may pause between two ``step`` calls.
        agent_server: path of the agent-server binary (default: see ``find_agent_server``).
        env_args: extra command-line arguments for the launched env.
        policy_name, mode: what the ``Welcome`` tells the env.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        scenario: str = "hetero",
        *,
        endpoint: Optional[str] = None,
        launch: bool = True,
        simulator: str = "auto",
        seed: Optional[int] = None,
        reward: Any = "barrier",
        max_tasks: int = DEFAULT_MAX_TASKS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        hello_timeout_s: float = DEFAULT_HELLO_TIMEOUT_S,
        env_timeout_s: float = DEFAULT_ENV_TIMEOUT_S,
        agent_server: Optional[str] = None,
        omnetpp_config: Optional[str] = None,
        env_args: tuple = (),
        policy_name: str = "python",
        mode: str = "train",
        keep_logs: bool = False,
    ):
        self.reward_config = rw.RewardConfig.of(reward)
        self.timeout_s = timeout_s
        self.launcher: Optional[EnvLauncher] = None
        self._tmp = None
        if endpoint is None:
            if not launch:
                raise ValueError("an external env (launch=False) needs an endpoint to connect to")
            endpoint, self._tmp = default_endpoint()
        self.hub = Hub(endpoint, 1, max_tasks=max_tasks, policy_name=policy_name, mode=mode)
        self._finalizer = weakref.finalize(self, _cleanup, self.hub, None, self._tmp)
        try:
            if launch:
                self.launcher = EnvLauncher(
                    self.hub.endpoint,
                    scenario,
                    simulator=simulator,
                    agent_server=agent_server,
                    env_timeout_s=env_timeout_s,
                    omnetpp_config=omnetpp_config,
                    extra_args=env_args,
                    keep_logs=keep_logs,
                )
                self._finalizer.detach()
                self._finalizer = weakref.finalize(self, _cleanup, self.hub, self.launcher, self._tmp)
                self.hub.liveness = self.launcher.check
                self.hub.slot_for_env_id = self.launcher.slot_of
                self._launch_seed = DEFAULT_SEED if seed is None else int(seed)
                self.launcher.start(0, self._launch_seed)
            self.hub.pump(lambda: self.hub.slot_session[0] is not None, hello_timeout_s, "Hello")
        except BaseException:
            self.close()
            raise
        rack = self.hub.rack
        self.observation_space, self.action_space = make_spaces(len(rack.nodes), max_tasks)
        self._builder = ObservationBuilder(rack, max_tasks)
        self._session: Optional[Session] = None
        self._step: Optional[pb.Step] = None
        self._obs: Optional[dict] = None
        self._episode_seed: Optional[int] = None
        self._stats = EpisodeStats()

    # --- what users read -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return self.hub.endpoint

    @property
    def hello(self) -> pb.Hello:
        """The Hello of the current session (the rack, its seed, its parameters)."""
        s = self._session or self.hub.slot_session[0]
        return s.hello if s is not None else self.hub.rack

    @property
    def policy_version(self) -> int:
        return self.hub.policy_version

    @policy_version.setter
    def policy_version(self, v: int) -> None:
        """Sent with every Placement (the env writes it into the nodes' heartbeats)."""
        self.hub.policy_version = int(v)

    def env_reports(self) -> list:
        """The launched rack-sim's own per-episode reports (see ``EnvLauncher.reports``)."""
        return self.launcher.reports(0) if self.launcher else []

    # --- gymnasium -------------------------------------------------------------------------

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        self._start_episode(seed)
        while True:
            ev = self.hub.next_event(0, self.timeout_s, "first Step of an episode")
            if ev.kind == "step":
                break
            # An episode that ended before its first Step, or a session that closed between
            # episodes: wait for the next one.
        if ev.step.step_index != 0:
            log.warning("env %s: episode starts at step index %d", ev.session.env_id, ev.step.step_index)
        self._session, self._step = ev.session, ev.step
        self._episode_seed = ev.session.hello.seed
        if self.launcher is not None:
            self._launch_seed = self._episode_seed
        ev.session.in_flight.clear()
        self._stats = EpisodeStats()
        self._obs = self._builder.build(ev.step)
        reward, rows = score_outcomes(ev.session, ev.step.outcomes, self.reward_config)
        return self._obs, self._info(ev.step, rows)

    def step(self, action):
        if self._step is None or self._session is None:
            raise gym.error.ResetNeeded("call reset() before step(), and again after an episode ends")
        s, cur = self._session, self._step
        targets = action_targets(action, len(cur.tasks), len(s.hello.nodes))
        self.hub.place(s, targets)
        self._step = None
        self._stats.steps += 1
        ev = self.hub.next_event(0, self.timeout_s, f"reply to the Placement of step {cur.step_index}")
        if ev.kind == "closed" or ev.session is not s:
            raise EnvClosed(
                f"env {s.env_id} closed its session in the middle of episode {cur.episode} "
                f"after step {cur.step_index} ({ev.reason or 'no reason given'})"
            )
        if ev.kind == "step":
            reward, rows = score_outcomes(s, ev.step.outcomes, self.reward_config)
            self._stats.add(rows, reward)
            self._step = ev.step
            self._obs = self._builder.build(ev.step)
            return self._obs, reward, False, False, self._info(ev.step, rows)
        end = ev.end
        reward, rows = score_outcomes(s, end.outcomes, self.reward_config)
        self._stats.add(rows, reward)
        s.in_flight.clear()
        terminated = end.reason == pb.END_REASON_TERMINATED
        info = {
            "seed": self._episode_seed,
            "episode": end.episode,
            "step_index": cur.step_index + 1,
            "sim_time_ns": end.sim_time_ns,
            "num_tasks": 0,
            "outcomes": rows,
            "episode_end": {"reason": pb.EndReason.Name(end.reason), "steps": end.steps},
            "episode_stats": self._stats.as_dict(),
        }
        # No new state comes with an EpisodeEnd: the final observation repeats the last Step's.
        return self._obs, reward, terminated, not terminated, info

    def close(self):
        if getattr(self, "_session", None) is not None and self._session.pending is not None:
            self.hub.abandon(self._session, "the agent closed")
        self._finalizer()

    # --- internals -------------------------------------------------------------------------

    def _info(self, step: pb.Step, rows: dict) -> dict:
        return {
            "seed": self._episode_seed,
            "episode": step.episode,
            "step_index": step.step_index,
            "sim_time_ns": step.sim_time_ns,
            "num_tasks": len(step.tasks),
            "outcomes": rows,
            "step": step,
        }

    def _start_episode(self, seed: Optional[int]) -> None:
        """Makes sure the next Step the hub delivers starts a new episode (with ``seed``)."""
        mid = self._step is not None
        if self.launcher is None:
            if mid:
                self.hub.abandon(self._session, "episode abandoned by the agent's reset()")
            if seed is not None:
                s = self.hub.slot_session[0]
                if s is not None and s.hello.seed != seed:
                    log.warning("external env %s runs its own seed %d, not %d", s.env_id, s.hello.seed, seed)
        else:
            if seed is not None:
                fresh = self.hub.slot_session[0]
                # A process that just said Hello with this seed and has not started its
                # episode needs no restart (the usual first reset).
                unused = (
                    not mid
                    and fresh is not None
                    and not fresh.mid_episode
                    and not self.hub.queues[0]
                    and fresh.hello.seed == seed
                )
                if not unused:
                    self._restart(seed)
            elif mid:
                self._restart(self._launch_seed + 1)
        self._step = None
        self._session = None

    def _restart(self, seed: int) -> None:
        self.hub.forget_slot(0)
        self._launch_seed = int(seed)
        self.launcher.start(0, self._launch_seed)


def _cleanup(hub: Hub, launcher: Optional[EnvLauncher], tmp: Optional[str]) -> None:
    try:
        if launcher is not None:
            launcher.close()
    finally:
        try:
            hub.close()
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
