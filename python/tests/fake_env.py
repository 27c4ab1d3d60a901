"""A hand-driven env for protocol tests: a ZeroMQ DEALER that sends exactly the bytes a test
wants (valid messages, garbage, wrong versions, out-of-order steps) and reads the agent's
replies with a bounded wait."""

from __future__ import annotations

import zmq

from malcolm.bridge.v1 import bridge_pb2 as pb

REPLY_TIMEOUT_MS = 5_000


def hello(n: int = 3, env_id: str = "fake-0", seed: int = 7, sth=(16, 2, 20)) -> pb.Hello:
    h = pb.Hello(env_id=env_id, simulator="fake", scenario="unit", seed=seed, heartbeat_interval_ns=100_000)
    for i in range(n):
        h.nodes.add(node_id=i, cores=4 if i < 2 else 16, speed=1.0 if i < 2 else 0.2, kind="t", discipline=1)
    h.sth.buckets, h.sth.fine_width_us, h.sth.critical_us = sth
    return h


def step(
    n: int = 3,
    index: int = 0,
    episode: int = 0,
    tasks=(),
    outcomes=(),
    now_ns: int = 1_000_000,
) -> pb.Step:
    """``tasks``: (task_id, origin, service_ns, deadline_ns); ``outcomes``: TaskOutcome kwargs."""
    s = pb.Step(sim_time_ns=now_ns, episode=episode, step_index=index)
    for i in range(n):
        ns = s.nodes.add(node_id=i, utilisation=0.25 * i)
        ns.sth.buckets.extend([i] * 16)
        ns.sth.total_tasks = 2 * i
        ns.sth.min_slack_us = -3 + i
        ns.sth.sum_load_us = 40 * i
        hb = ns.heartbeat
        hb.node_id, hb.flags, hb.load_factor_milli, hb.queue_len = i, 2 if i == 2 else 0, 500 * i, i
        hb.slack_p10_us, hb.slack_p50_us = 5 * i, 9 * i
    for tid, origin, service_ns, deadline_ns in tasks:
        s.tasks.add(
            task_id=tid, origin=origin, size_bytes=1024, service_estimate_ns=service_ns,
            deadline_ns=deadline_ns, arrival_ns=now_ns - 500,
        )
    for o in outcomes:
        s.outcomes.add(**o)
    return s


class FakeEnv:
    def __init__(self, endpoint: str):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.next_id = 1

    def send(self, field: str, msg, version: int = 1) -> int:
        env = pb.Envelope(protocol_version=version, request_id=self.next_id)
        getattr(env, field).CopyFrom(msg)
        self.sock.send(env.SerializeToString())
        self.next_id += 1
        return env.request_id

    def send_raw(self, data: bytes) -> None:
        self.sock.send(data)

    def recv(self, timeout_ms: int = REPLY_TIMEOUT_MS) -> pb.Envelope:
        if not self.sock.poll(timeout_ms):
            raise AssertionError(f"no reply from the agent within {timeout_ms} ms")
        env = pb.Envelope()
        env.ParseFromString(self.sock.recv())
        return env

    def close(self) -> None:
        self.sock.close(linger=0)
        self.ctx.term()
