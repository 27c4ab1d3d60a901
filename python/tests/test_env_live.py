"""The adapter against live ``agent-server env`` processes (the embedded rack simulator over
ZeroMQ): Gymnasium's own env checker, seeding, episodes end to end, the one-line
``gymnasium.make``, the vector env, and a killed env raising within its bound."""

import os
import time
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import malcolm_gym
from malcolm_gym import EnvExited, RackEnv, RackVectorEnv
from malcolm_gym.baselines import RoundRobin

from conftest import SMALL


def pad(targets, width):
    a = np.zeros(width, dtype=np.int64)
    a[: len(targets)] = targets
    return a


def run_episode(env, policy_cls, obs, info):
    """Plays one episode with a baseline port; returns (steps, return, last info)."""
    policy = policy_cls(env.unwrapped.hello, info["seed"])
    width = env.action_space.shape[0]
    steps, ret = 0, 0.0
    while True:
        obs, r, term, trunc, info = env.step(pad(policy.decide(info["step"]), width))
        steps += 1
        ret += r
        if term or trunc:
            return steps, ret, info


def test_check_env_passes_on_a_live_env(agent_server):
    env = RackEnv(SMALL, simulator="rack-sim", seed=3, agent_server=agent_server)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=True)
        # The checker's complaints come as warnings: none is acceptable.
        msgs = [str(w.message) for w in caught if "gymnasium" in str(w.filename) or "Gym" in str(w.category)]
        assert not msgs, msgs
    finally:
        env.close()


def test_gymnasium_make_in_one_line_and_seeding(agent_server):
    env = gymnasium.make("malcolm_gym:malcolm/Rack-v0", scenario=SMALL, simulator="rack-sim", agent_server=agent_server)
    try:
        assert env.spec.id == malcolm_gym.ENV_ID
        obs_a, info_a = env.reset(seed=11)
        obs_b, info_b = env.reset(seed=11)
        obs_c, info_c = env.reset(seed=12)
        assert info_a["seed"] == info_b["seed"] == 11 and info_c["seed"] == 12
        assert info_a["step"] == info_b["step"] and info_a["step"] != info_c["step"]
        for k in obs_a:
            np.testing.assert_array_equal(obs_a[k], obs_b[k])
        assert env.observation_space.contains(obs_c)
        # The rack of `hetero`: 2 fast nodes (4 cores x 1.0), 3 slow ones (16 x 0.2).
        nodes = obs_c["nodes"]
        assert list(nodes[:, malcolm_gym.observation.N_CORES]) == [4, 4, 16, 16, 16]
        np.testing.assert_allclose(nodes[:, malcolm_gym.observation.N_SPEED], [1, 1, 0.2, 0.2, 0.2])
    finally:
        env.close()


def test_episodes_run_to_their_end_and_the_next_one_follows(agent_server):
    env = RackEnv(SMALL, simulator="rack-sim", seed=5, agent_server=agent_server)
    try:
        pid = env.launcher.procs[0].popen.pid
        obs, info = env.reset()
        steps, ret, last = run_episode(env, RoundRobin, obs, info)
        # A task-count limit cuts the episode: truncated, not terminated.
        assert last["episode_end"]["reason"] == "END_REASON_TRUNCATED"
        assert last["episode_end"]["steps"] == steps
        stats = last["episode_stats"]
        assert stats["steps"] == steps and stats["return"] == pytest.approx(ret)
        assert stats["outcomes"] >= 400  # every measured task, plus arrivals after the limit
        # The env's own report agrees on the step count; the next reset continues the same
        # process with the next seed.
        obs, info = env.reset()
        assert info["seed"] == 6 and env.launcher.procs[0].popen.pid == pid
        report = env.env_reports()[0]
        assert report["seed"] == 5 and report["steps"] == steps
        assert 0.0 <= report["miss_rate"] <= 1.0
        # reset(seed) in the middle of an episode restarts the env with that seed.
        env.step(np.zeros(env.action_space.shape, dtype=np.int64))
        obs, info = env.reset(seed=40)
        assert info["seed"] == 40 and info["step_index"] == 0
        assert env.launcher.procs[0].popen.pid != pid
    finally:
        env.close()


def test_a_killed_env_raises_within_its_bound(agent_server):
    env = RackEnv(SMALL, simulator="rack-sim", seed=1, agent_server=agent_server, timeout_s=20)
    try:
        obs, info = env.reset()
        env.launcher.kill(0)
        t0 = time.monotonic()
        with pytest.raises(EnvExited, match="killed by signal 9"):
            for _ in range(10_000):
                obs, *_ = env.step(np.zeros(env.action_space.shape, dtype=np.int64))
        # Noticed by the liveness check, long before the 20 s message timeout.
        assert time.monotonic() - t0 < 2.0
    finally:
        env.close()


def test_close_stops_the_env_processes(agent_server):
    env = RackVectorEnv(2, SMALL, simulator="rack-sim", agent_server=agent_server)
    pids = [p.popen.pid for p in env.launcher.procs.values()]
    env.reset(seed=1)
    env.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_vector_env_serves_several_envs_on_one_endpoint(agent_server):
    envs = gymnasium.make_vec("malcolm/Rack-v0", num_envs=2, scenario=SMALL, simulator="rack-sim",
                              agent_server=agent_server)
    try:
        assert isinstance(envs.unwrapped, RackVectorEnv)
        assert envs.observation_space["nodes"].shape == (2, 5, malcolm_gym.observation.NODE_FEATURES)
        obs, infos = envs.reset(seed=20)
        assert list(infos["seed"]) == [20, 21] and all(infos["_seed"])
        assert envs.observation_space.contains(obs)
        policies = [RoundRobin(envs.unwrapped.hub.rack) for _ in range(2)]
        width = envs.single_action_space.shape[0]
        episodes_done = [0, 0]
        seeds_seen = [[20], [21]]
        autoreset = [False, False]
        for _ in range(20_000):
            actions = np.stack([pad(p.decide(s) if s is not None else [], width)
                                for p, s in zip(policies, infos["step"])])
            obs, rewards, term, trunc, infos = envs.step(actions)
            assert envs.observation_space.contains(obs)
            for i in range(2):
                if autoreset[i]:
                    # NEXT_STEP autoreset: this step started the env's next episode.
                    assert infos["step_index"][i] == 0 and rewards[i] == 0.0
                    seeds_seen[i].append(int(infos["seed"][i]))
                autoreset[i] = bool(term[i] or trunc[i])
                if autoreset[i]:
                    assert trunc[i] and infos["_episode_end"][i]
                    episodes_done[i] += 1
            if min(episodes_done) >= 2 and not any(autoreset):
                break
        # Env i runs seeds 20 + i, 22 + i, ...: the two never repeat each other.
        assert seeds_seen[0][:3] == [20, 22, 24] and seeds_seen[1][:3] == [21, 23, 25]
        # Each launched env reports its own episodes, with the seeds above.
        assert [r["seed"] for r in envs.unwrapped.env_reports(0)][:2] == [20, 22]
    finally:
        envs.close()
