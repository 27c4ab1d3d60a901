"""The adapter driving OMNeT++ Cmdenv runs (the Phase 2 rack: RoCEv2 NICs, PFC, ToR switch)
instead of rack-sim, where OMNeT++ is installed (OMNETPP_ROOT or opp_run on PATH, as for the
rest of the test command's OMNeT++ checks). The ini-config matching runs everywhere."""

import numpy as np
import pytest

import gymnasium
from malcolm_gym import BridgeError
from malcolm_gym.baselines import SlackGreedy
from malcolm_gym.launcher import find_repo_root, omnetpp_available, omnetpp_config_for


def test_scenarios_map_to_ini_configs_like_combined_run():
    repo = find_repo_root()
    assert omnetpp_config_for("hetero", repo) == "Hetero"
    assert omnetpp_config_for("microburst:rho=0.7", repo) == "MicroBurst"
    with pytest.raises(BridgeError, match="no OMNeT\\+\\+ ini config"):
        omnetpp_config_for("homogeneous-16", repo)


@pytest.mark.skipif(not omnetpp_available(), reason="OMNeT++ not found (set OMNETPP_ROOT or put opp_run on PATH)")
def test_an_omnetpp_run_through_the_adapter():
    env = gymnasium.make("malcolm_gym:malcolm/Rack-v0", scenario="hetero", simulator="omnetpp",
                         env_args=("--sim-time-limit=1ms",))
    try:
        hello = env.unwrapped.hello
        assert (hello.simulator, hello.scenario, len(hello.nodes)) == ("omnetpp", "Hetero", 16)
        obs, info = env.reset(seed=3)
        assert info["seed"] == 3 and env.observation_space.contains(obs)
        assert len(info["step"].links) == 32  # NIC <-> ToR state in both directions: PFC, ECN
        policy = SlackGreedy(hello, info["seed"])
        for steps in range(1, 100_000):
            t = policy.decide(info["step"])
            a = np.zeros(env.action_space.shape, dtype=np.int64)
            a[: len(t)] = t
            obs, reward, term, trunc, info = env.step(a)
            if term or trunc:
                break
        assert info["episode_end"]["steps"] == steps > 100
        assert info["episode_stats"]["outcomes"] > 0
    finally:
        env.close()
