"""The adapter's side of the protocol against a hand-driven env (a raw DEALER): the mapping of
Hello/Step/EpisodeEnd onto reset/step, the reward of reported outcomes, and every kind of bad
input raising a clear exception within its bound while the env gets an ``Error`` reply."""

import math
import shutil
import tempfile
import time

import numpy as np
import pytest

from malcolm.bridge.v1 import bridge_pb2 as pb
from malcolm_gym import EnvClosed, EnvTimeout, ProtocolError, RackEnv, VersionMismatch
from malcolm_gym import observation as ob
from malcolm_gym.hub import Hub

from fake_env import FakeEnv, hello, step

# Bound of the adapter's waits in these tests, and how late an exception may come after it.
TIMEOUT_S = 0.5
SLACK_S = 1.5


@pytest.fixture
def endpoint():
    d = tempfile.mkdtemp(prefix="mg-proto-")
    yield f"ipc://{d}/agent.sock"
    shutil.rmtree(d, ignore_errors=True)


def connect(endpoint, n=3, **hello_kw):
    """A fake env that has said Hello, and the adapter that welcomed it."""
    fake = FakeEnv(endpoint)
    fake.send("hello", hello(n, **hello_kw))  # queued until the adapter binds
    env = RackEnv(endpoint=endpoint, launch=False, timeout_s=TIMEOUT_S, hello_timeout_s=5, max_tasks=4)
    w = fake.recv()
    assert w.WhichOneof("body") == "welcome" and w.request_id == 1
    return fake, env


def expect_error(fake, code, request_id=None):
    r = fake.recv()
    assert r.WhichOneof("body") == "error", r
    assert pb.ErrorCode.Name(r.error.code) == "ERROR_CODE_" + code, r.error
    if request_id is not None:
        assert r.request_id == request_id
    return r.error.message


def test_an_episode_maps_onto_reset_and_step(endpoint):
    fake, env = connect(endpoint)
    try:
        assert env.observation_space["nodes"].shape == (3, ob.NODE_FEATURES)
        assert env.observation_space["gst"].shape == (3, 3, ob.GST_FEATURES)
        assert env.action_space.shape == (4,) and list(env.action_space.nvec) == [3, 3, 3, 3]
        first = step(tasks=[(10, 0, 2_000, 1_045_000), (11, 2, 5_000, 1_010_000)])
        gst = first.nodes[0].gst
        gst.heartbeats = bytes.fromhex("00000000000000000000000000000000") + bytes.fromhex(
            "01020000ff7fff7f0000000007000000") + bytes.fromhex("02015f03f4ff04001100000003000000")
        gst.age_ns.extend([0, 25_000, (1 << 64) - 1])
        fake.send("step", first)
        obs, info = env.reset()
        assert env.observation_space.contains(obs)
        assert info["step_index"] == 0 and info["num_tasks"] == 2 and info["seed"] == 7
        assert list(obs["task_mask"]) == [1, 1, 0, 0]
        # Task columns: origin, slack now (us), service (us), waited (us), bytes, class.
        np.testing.assert_allclose(obs["tasks"][1], [2, 10.0, 5.0, 0.5, 1024, 0])
        np.testing.assert_allclose(obs["tasks"][0], [0, 45.0, 2.0, 0.5, 1024, 0])
        # Node 2: its STH, flags (IDLE), load factor, percentiles, queue, static cores/speed.
        n2 = obs["nodes"][2]
        assert list(n2[:16]) == [2] * 16 and n2[ob.N_TOTAL] == 4 and n2[ob.N_MIN_SLACK] == -1
        assert n2[ob.N_IDLE] == 1 and n2[ob.N_PANIC] == 0 and n2[ob.N_RHO] == pytest.approx(1.0)
        assert (n2[ob.N_CORES], n2[ob.N_SPEED]) == (16, pytest.approx(0.2))
        # The GST of node 0, decoded from the golden heartbeat bytes; unknown entries are zero.
        assert list(obs["gst_mask"]) == [1, 0, 0]
        g = obs["gst"][0]
        assert list(g[1]) == [1, 25.0, 0, 1, 0.0, 32767, 32767, 0]
        assert list(g[2]) == [0] * ob.GST_FEATURES
        # The placement reaches the env with the step's index and the policy version.
        env.policy_version = 5
        fake_outcomes = [
            dict(task_id=10, node_id=2, origin=0, kind=pb.OUTCOME_KIND_DROPPED, arrival_ns=999_500,
                 finish_ns=1_040_000, deadline_ns=1_045_000, latency_ns=40_500, decided_at_step=0),
            dict(task_id=11, node_id=1, origin=2, kind=pb.OUTCOME_KIND_COMPLETED, arrival_ns=999_500,
                 finish_ns=1_000_000, deadline_ns=1_010_000, latency_ns=500, decided_at_step=0),
        ]
        fake.send("step", step(index=1, tasks=[(12, 1, 1_000, 2_000_000)], outcomes=fake_outcomes))
        obs, reward, term, trunc, info = env.step(np.array([2, 1, 0, 0]))
        p = fake.recv()
        assert p.WhichOneof("body") == "placement" and p.request_id == 2
        assert list(p.placement.targets) == [2, 1] and p.placement.step_index == 0
        assert p.placement.policy_version == 5
        # Rewards: the drop on node 2 (speed 0.2) would have needed 2 us / 0.2 = 10 us more:
        # S = 1045 - (1040 + 10) = -5 us; the completion kept 10 us.
        want = [-10.0 * math.exp(0.5 * 5.0), 1.0 + 0.1 * math.log1p(0.1 * 10.0)]
        assert list(info["outcomes"]["reward"]) == pytest.approx(want)
        assert reward == pytest.approx(sum(want)) and not term and not trunc
        # The episode ends (truncated); its outcomes are scored, the last observation repeats.
        end = pb.EpisodeEnd(episode=0, steps=2, reason=pb.END_REASON_TRUNCATED, sim_time_ns=3_000_000)
        end.outcomes.add(task_id=12, node_id=0, origin=1, kind=pb.OUTCOME_KIND_MISSED,
                         arrival_ns=999_500, finish_ns=2_002_000, deadline_ns=2_000_000, latency_ns=1_002_500)
        fake.send("episode_end", end)
        obs2, reward, term, trunc, info = env.step([0, 0, 0, 0])
        assert fake.recv().placement.targets == [0]
        ack = fake.recv()
        assert ack.WhichOneof("body") == "ack" and ack.request_id == 4
        assert (term, trunc) == (False, True)
        assert reward == pytest.approx(-10.0 * math.exp(0.5 * 2.0))
        assert info["episode_end"]["reason"] == "END_REASON_TRUNCATED"
        assert info["episode_stats"]["outcomes"] == 3 and info["episode_stats"]["dropped"] == 1
        assert obs2 is obs
        with pytest.raises(Exception, match="reset"):
            env.step([0, 0, 0, 0])
        # Close between episodes is acknowledged whenever it arrives.
        fake.send("close", pb.Close(reason="done"))
        fake.send("hello", hello())
        fake.send("step", step(tasks=[(1, 0, 1000, 2_000_000)]))
        obs, info = env.reset()
        # The same DEALER said Hello again after Close: a new session.
        assert fake.recv().WhichOneof("body") == "ack"
        assert fake.recv().WhichOneof("body") == "welcome"
        assert info["num_tasks"] == 1
    finally:
        env.close()
        fake.close()


def test_invalid_actions_are_refused_before_anything_is_sent(endpoint):
    fake, env = connect(endpoint)
    try:
        fake.send("step", step(tasks=[(1, 0, 1000, 2_000_000), (2, 1, 1000, 2_000_000)]))
        env.reset()
        for bad, why in [([0], "1 targets for 2"), ([0, 3, 0, 0], "node 3 is outside"),
                         ([[0, 1]], "1-D"), ([0.5, 1, 0, 0], "integer")]:
            with pytest.raises(ValueError, match=why):
                env.step(bad)
        with pytest.raises(AssertionError):
            fake.recv(timeout_ms=100)  # nothing was sent
        fake.send("step", step(index=1))
        env.step([1, 0, 0, 0])
        assert list(fake.recv().placement.targets) == [1, 0]
    finally:
        env.close()
        fake.close()


@pytest.mark.parametrize(
    "make_bad, code, exc",
    [
        (lambda f: f.send_raw(b"\xff\xff garbage"), "MALFORMED", ProtocolError),
        (lambda f: f.send("step", step(index=0), version=2), "VERSION_MISMATCH", VersionMismatch),
        (lambda f: f.send("step", step(index=3)), "PROTOCOL_VIOLATION", ProtocolError),
        (lambda f: f.send("step", step(tasks=[(1, 9, 1, 1)])), "INVALID_NODE_ID", ProtocolError),
        (lambda f: f.send("step", step(n=2)), "INVALID_ARGUMENT", ProtocolError),
        (lambda f: f.send("placement", pb.Placement()), "PROTOCOL_VIOLATION", ProtocolError),
        (lambda f: f.send("hello", hello()), "PROTOCOL_VIOLATION", ProtocolError),
    ],
    ids=["garbage", "version", "step-order", "node-id", "node-count", "agent-body", "second-hello"],
)
def test_bad_input_raises_within_the_bound_and_the_env_is_told(endpoint, make_bad, code, exc):
    fake, env = connect(endpoint)
    try:
        make_bad(fake)
        t0 = time.monotonic()
        with pytest.raises(exc) as e:
            env.reset()
        assert time.monotonic() - t0 < TIMEOUT_S + SLACK_S
        assert e.value.code == code
        expect_error(fake, code)
    finally:
        env.close()
        fake.close()


def test_version_mismatch_echoes_the_request_id(endpoint):
    fake, env = connect(endpoint)
    try:
        rid = fake.send("step", step(), version=7)
        with pytest.raises(VersionMismatch, match="protocol version 7 not supported"):
            env.reset()
        expect_error(fake, "VERSION_MISMATCH", request_id=rid)
    finally:
        env.close()
        fake.close()


def test_a_silent_env_times_out_within_the_bound(endpoint):
    fake, env = connect(endpoint)
    try:
        t0 = time.monotonic()
        with pytest.raises(EnvTimeout, match="within 0.5 s"):
            env.reset()
        assert TIMEOUT_S <= time.monotonic() - t0 < TIMEOUT_S + SLACK_S
        # Mid-episode too: the env takes the placement and never answers.
        fake.send("step", step(tasks=[(1, 0, 1000, 2_000_000)]))
        env.reset()
        t0 = time.monotonic()
        with pytest.raises(EnvTimeout, match="Placement of step 0"):
            env.step([0, 0, 0, 0])
        assert time.monotonic() - t0 < TIMEOUT_S + SLACK_S
    finally:
        env.close()
        fake.close()


def test_no_env_at_all_times_out_at_construction(endpoint):
    t0 = time.monotonic()
    with pytest.raises(EnvTimeout, match="no Hello"):
        RackEnv(endpoint=endpoint, launch=False, hello_timeout_s=0.3)
    assert time.monotonic() - t0 < 0.3 + SLACK_S


def test_an_sth_the_agent_cannot_read_is_refused_at_hello(endpoint):
    fake = FakeEnv(endpoint)
    try:
        fake.send("hello", hello(sth=(8, 2, 20)))
        with pytest.raises(ProtocolError, match="STH config"):
            RackEnv(endpoint=endpoint, launch=False, hello_timeout_s=5)
        expect_error(fake, "INVALID_ARGUMENT")
    finally:
        fake.close()


def test_more_tasks_than_the_action_space_holds(endpoint):
    fake, env = connect(endpoint)
    try:
        fake.send("step", step(tasks=[(i, 0, 1, 2) for i in range(5)]))
        with pytest.raises(Exception, match="max_tasks=4"):
            env.reset()
        expect_error(fake, "INVALID_ARGUMENT")
    finally:
        env.close()
        fake.close()


def test_an_env_closing_mid_episode_raises(endpoint):
    fake, env = connect(endpoint)
    try:
        fake.send("step", step(tasks=[(1, 0, 1000, 2_000_000)]))
        env.reset()
        fake.send("close", pb.Close(reason="simulator crashed"))
        with pytest.raises(EnvClosed, match="simulator crashed"):
            env.step([0, 0, 0, 0])
    finally:
        env.close()
        fake.close()


def test_reset_mid_episode_tells_an_external_env_and_a_second_env_is_turned_away(endpoint):
    fake, env = connect(endpoint)
    other = FakeEnv(endpoint)
    try:
        fake.send("step", step(tasks=[(1, 0, 1000, 2_000_000)]))
        env.reset()
        # One env at a time: a second Hello gets UNAVAILABLE, the first session is untouched.
        other.send("hello", hello(env_id="intruder"))
        env.hub.pump(lambda: other.sock.poll(0), 5, "the intruder's Hello")
        assert "busy" in expect_error(other, "UNAVAILABLE")
        fake.send("step", step(index=1, tasks=[(2, 0, 1000, 2_000_000)]))
        env.step([0, 0, 0, 0])
        assert fake.recv().WhichOneof("body") == "placement"
        # reset() mid-episode: the pending Step is refused, the env told why.
        with pytest.raises(EnvTimeout):
            env.reset()
        assert "abandoned" in expect_error(fake, "UNAVAILABLE")
    finally:
        env.close()
        fake.close()
        other.close()


def test_oversized_messages_are_refused(endpoint):
    hub = Hub(endpoint, 1, max_tasks=4, max_message_bytes=1_000)
    fake = FakeEnv(endpoint)
    try:
        fake.send_raw(b"\x00" * 2_000)
        with pytest.raises(ProtocolError, match="exceeds the limit") as e:
            hub.pump(lambda: False, TIMEOUT_S, "anything")
        assert e.value.code == "OVERSIZED"
        expect_error(fake, "OVERSIZED")
    finally:
        hub.close()
        fake.close()
