"""``RackVectorEnv``: N env sessions on one endpoint (one ROUTER), the way several
``agent-server env`` processes or OMNeT++ runs feed the Rust server, as a Gymnasium
``VectorEnv``.

Sub-env i is a slot: launched envs are bound to their slot by env id (process i runs seeds
``seed + i``, ``seed + i + N``, ...: the envs never repeat each other's episodes); external
envs take the first free slot when they say Hello. The envs simulate in parallel, each in its
own process: ``step`` sends every placement first, then collects the replies.

Infos follow Gymnasium's vector layout (``info[key][i]`` for env i, ``info["_" + key]`` says
which envs have it); ``info["outcomes"][i]`` is env i's dict of outcome columns (as
``RackEnv``'s ``info["outcomes"]``), and ``info["step"][i]`` its raw ``Step``.

Autoreset is Gymnasium's default ``NEXT_STEP``: after a sub-env reports the end of an episode,
its action in the following ``step`` is ignored and that ``step`` returns the first
observation of its next episode (reward 0, not terminated).
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from malcolm.bridge.v1 import bridge_pb2 as pb
from . import rewards as rw
from .env import (
    DEFAULT_HELLO_TIMEOUT_S,
    DEFAULT_SEED,
    DEFAULT_TIMEOUT_S,
    EpisodeStats,
    _cleanup,
    action_targets,
    default_endpoint,
    score_outcomes,
)
from .errors import EnvClosed
from .hub import Hub
from .launcher import DEFAULT_ENV_TIMEOUT_S, EnvLauncher
from .observation import DEFAULT_MAX_TASKS, ObservationBuilder, make_spaces

log = logging.getLogger(__name__)


_NUMBER = (bool, int, float, np.number)


def merge_infos(infos: list, num_envs: int) -> dict:
    """Per-env info dicts -> Gymnasium's vector layout: one array per key and a boolean
    ``_key`` mask of the envs that have it. Numbers are batched into a numeric array, dicts of
    numbers merged key by key; anything else (a Step message, the outcome columns of one env)
    goes into an object array, element i for env i."""
    out: dict = {}
    for k in dict.fromkeys(k for info in infos for k in info):
        values = [info.get(k) for info in infos]
        have = np.array([v is not None for v in values])
        present = [v for v in values if v is not None]
        if all(isinstance(v, dict) and all(isinstance(x, _NUMBER) for x in v.values()) for v in present):
            out[k] = merge_infos([v or {} for v in values], num_envs)
        elif all(isinstance(v, _NUMBER) for v in present):
            arr = np.zeros(num_envs, dtype=np.result_type(*present))
            arr[have] = present
            out[k] = arr
        else:
            arr = np.empty(num_envs, dtype=object)
            for i, v in enumerate(values):
                arr[i] = v
            out[k] = arr
        out["_" + k] = have
    return out


class RackVectorEnv(VectorEnv):
    """``num_envs`` Malcolm-Strict racks served on one endpoint. Arguments as ``RackEnv``."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 2,
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
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1")
        self.num_envs = num_envs
        self.reward_config = rw.RewardConfig.of(reward)
        self.timeout_s = timeout_s
        self.launcher: Optional[EnvLauncher] = None
        self._tmp = None
        if endpoint is None:
            if not launch:
                raise ValueError("external envs (launch=False) need an endpoint to connect to")
            endpoint, self._tmp = default_endpoint()
        self.hub = Hub(endpoint, num_envs, max_tasks=max_tasks, policy_name=policy_name, mode=mode)
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
                base = DEFAULT_SEED if seed is None else int(seed)
                self._launch_seed = [base + i for i in range(num_envs)]
                for i in range(num_envs):
                    self.launcher.start(i, self._launch_seed[i], stride=num_envs)
            self.hub.pump(lambda: self.hub.rack is not None, hello_timeout_s, "Hello")
        except BaseException:
            self.close()
            raise
        rack = self.hub.rack
        self.single_observation_space, self.single_action_space = make_spaces(len(rack.nodes), max_tasks)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._builder = ObservationBuilder(rack, max_tasks)
        self._sessions: list = [None] * num_envs
        self._steps: list = [None] * num_envs
        self._obs: list = [None] * num_envs
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self._stats = [EpisodeStats() for _ in range(num_envs)]

    @property
    def endpoint(self) -> str:
        return self.hub.endpoint

    @property
    def policy_version(self) -> int:
        return self.hub.policy_version

    @policy_version.setter
    def policy_version(self, v: int) -> None:
        self.hub.policy_version = int(v)

    def env_reports(self, i: int) -> list:
        return self.launcher.reports(i) if self.launcher else []

    # --- gymnasium -------------------------------------------------------------------------

    def reset(self, *, seed: "int | Sequence[int] | None" = None, options: Optional[dict] = None):
        if seed is None:
            seeds = [None] * self.num_envs
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = [None if s is None else int(s) for s in seed]
            if len(seeds) != self.num_envs:
                raise ValueError(f"{len(seeds)} seeds for {self.num_envs} envs")
        if seeds[0] is not None:
            self._np_random, self._np_random_seed = seeding.np_random(seeds[0])
        for i in range(self.num_envs):
            self._prepare_slot(i, seeds[i])
        infos = []
        for i in range(self.num_envs):
            infos.append(self._first_step(i))
        self._autoreset[:] = False
        return self._batch(), merge_infos(infos, self.num_envs)

    def step(self, actions):
        actions = np.asarray(actions)
        if actions.ndim != 2 or actions.shape[0] != self.num_envs:
            raise ValueError(f"actions must have shape ({self.num_envs}, max_tasks), got {actions.shape}")
        if any(self._steps[i] is None and not self._autoreset[i] for i in range(self.num_envs)):
            raise gym.error.ResetNeeded("call reset() before step()")
        # Validate every action before sending anything: a bad one must not leave some envs
        # placed and others not.
        targets = [None] * self.num_envs
        for i in range(self.num_envs):
            if not self._autoreset[i]:
                st = self._steps[i]
                targets[i] = action_targets(actions[i], len(st.tasks), len(self._sessions[i].hello.nodes))
        for i in range(self.num_envs):
            if targets[i] is not None:
                self.hub.place(self._sessions[i], targets[i])
                self._stats[i].steps += 1
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos = []
        for i in range(self.num_envs):
            if self._autoreset[i]:
                infos.append(self._first_step(i))
                self._autoreset[i] = False
                continue
            s, cur = self._sessions[i], self._steps[i]
            self._steps[i] = None
            ev = self.hub.next_event(i, self.timeout_s, f"reply of env {i} to the Placement of step {cur.step_index}")
            if ev.kind == "closed" or ev.session is not s:
                raise EnvClosed(
                    f"env {s.env_id} (slot {i}) closed its session in the middle of episode {cur.episode} "
                    f"after step {cur.step_index} ({ev.reason or 'no reason given'})"
                )
            if ev.kind == "step":
                r, rows = score_outcomes(s, ev.step.outcomes, self.reward_config)
                self._stats[i].add(rows, r)
                rewards[i] = r
                self._steps[i] = ev.step
                self._obs[i] = self._builder.build(ev.step)
                infos.append(self._info(i, ev.step, rows))
                continue
            end = ev.end
            r, rows = score_outcomes(s, end.outcomes, self.reward_config)
            self._stats[i].add(rows, r)
            s.in_flight.clear()
            rewards[i] = r
            terminated[i] = end.reason == pb.END_REASON_TERMINATED
            truncated[i] = not terminated[i]
            self._autoreset[i] = True
            infos.append(
                {
                    "env_id": s.env_id,
                    "seed": s.hello.seed,
                    "episode": end.episode,
                    "step_index": cur.step_index + 1,
                    "sim_time_ns": end.sim_time_ns,
                    "num_tasks": 0,
                    "outcomes": rows,
                    "episode_end": {"reason": pb.EndReason.Name(end.reason), "steps": end.steps},
                    "episode_stats": self._stats[i].as_dict(),
                }
            )
            if self.launcher is not None:
                self._launch_seed[i] += self.num_envs
        return self._batch(), rewards, terminated, truncated, merge_infos(infos, self.num_envs)

    def close_extras(self, **kwargs):
        for s in getattr(self, "_sessions", []):
            if s is not None and s.pending is not None:
                self.hub.abandon(s, "the agent closed")
        self._finalizer()

    # --- internals -------------------------------------------------------------------------

    def _prepare_slot(self, i: int, seed: Optional[int]) -> None:
        mid = self._steps[i] is not None
        s = self._sessions[i]
        if self.launcher is None:
            if mid:
                self.hub.abandon(s, "episode abandoned by the agent's reset()")
        elif seed is not None:
            fresh = self.hub.slot_session[i]
            unused = (
                not mid and fresh is not None and not fresh.mid_episode and not self.hub.queues[i]
                and fresh.hello.seed == seed
            )
            if not unused:
                self._restart(i, seed)
        elif mid:
            self._restart(i, self._launch_seed[i] + self.num_envs)
        self._steps[i] = None
        self._sessions[i] = None

    def _restart(self, i: int, seed: int) -> None:
        self.hub.forget_slot(i)
        self._launch_seed[i] = int(seed)
        self.launcher.start(i, self._launch_seed[i], stride=self.num_envs)

    def _first_step(self, i: int) -> dict:
        while True:
            ev = self.hub.next_event(i, self.timeout_s, f"first Step of an episode of env {i}")
            if ev.kind == "step":
                break
        s = ev.session
        s.in_flight.clear()
        self._sessions[i], self._steps[i] = s, ev.step
        if self.launcher is not None:
            self._launch_seed[i] = s.hello.seed
        self._stats[i] = EpisodeStats()
        self._obs[i] = self._builder.build(ev.step)
        _, rows = score_outcomes(s, ev.step.outcomes, self.reward_config)
        return self._info(i, ev.step, rows)

    def _info(self, i: int, step: pb.Step, rows: dict) -> dict:
        s = self._sessions[i]
        return {
            "env_id": s.env_id,
            "seed": s.hello.seed,
            "episode": step.episode,
            "step_index": step.step_index,
            "sim_time_ns": step.sim_time_ns,
            "num_tasks": len(step.tasks),
            "outcomes": rows,
            "step": step,
        }

    def _batch(self) -> dict:
        return {k: np.stack([o[k] for o in self._obs]) for k in self._obs[0]}

