"""Port of ``policies/src/view.rs``: what an origin node knows of the rack when it places a task,
its stale Global State Table (``GstView``) and the wait estimate built from it (``WaitModel``),
shared there by slack-greedy and the learner's features. Same names, same order of floating
point operations (the placements must come out bit-identical).

The estimate of the wait before a new task could start on node ``j``, as origin ``o`` sees it:
- ``j == o``: the origin's fresh state (remaining work over its cores once all are busy);
- otherwise the heartbeat in ``o``'s GST: tasks beyond the free cores times the running mean
  service estimate, minus the heartbeat's age (the node kept working since), plus what ``o``
  itself sent to ``j`` that the heartbeat cannot show yet;
- in both cases plus the work placed on ``j`` earlier in the same Step by other origins.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Optional

from malcolm.bridge.v1 import bridge_pb2 as pb

#: How many observed tasks the running mean of service estimates averages over at most.
SERVICE_MEAN_WINDOW = 10_000.0
HEARTBEAT_LEN = 16
U64_MAX = (1 << 64) - 1
FLAG_IDLE = 0x02
#: ``baselines/mod.rs``: one-way propagation and link rate when the Hello does not say.
DEFAULT_T_PROP_NS = 2_500
DEFAULT_LINK_GBPS = 100.0
_HB = struct.Struct("<BBHhhII")


@dataclass(frozen=True)
class Heartbeat:
    node_id: int
    flags: int
    load_factor: int
    slack_p10_us: int
    slack_p50_us: int
    queue_len: int
    reserved: int

    def idle(self) -> bool:
        return self.flags & FLAG_IDLE != 0


class GstView:
    """Read-only access to one node's Global State Table: heartbeat ``j`` and its age."""

    def __init__(self, node: pb.NodeState):
        if node.HasField("gst"):
            self.heartbeats, self.age_ns = node.gst.heartbeats, node.gst.age_ns
        else:
            self.heartbeats, self.age_ns = b"", []

    def get(self, j: int) -> Optional[tuple]:
        """Heartbeat of node ``j`` and its age in ns; None when the origin has none yet (age
        u64::MAX on the wire), or the entry is missing."""
        if j >= len(self.age_ns):
            return None
        age = self.age_ns[j]
        if age == U64_MAX:
            return None
        b = self.heartbeats[HEARTBEAT_LEN * j : HEARTBEAT_LEN * (j + 1)]
        if len(b) != HEARTBEAT_LEN:
            return None
        return Heartbeat(*_HB.unpack(b)), age


class NetInfo:
    """``baselines::NetInfo``: the env's network as announced in ``Hello.parameters``."""

    def __init__(self, hello: pb.Hello):
        p = hello.parameters
        self.one_way_ns = _parse(p.get("one_way_ns"), int, DEFAULT_T_PROP_NS)
        self.link_gbps = _parse(p.get("link_gbps"), float, DEFAULT_LINK_GBPS)

    def transfer_ns(self, frm: int, to: int, size_bytes: int) -> int:
        if frm == to:
            return 0
        return self.one_way_ns + serialisation_ns(size_bytes, self.link_gbps)


def serialisation_ns(size_bytes: int, gbps: float) -> int:
    if gbps <= 0.0:
        return 0
    return math.ceil(size_bytes * 8.0 / gbps)


def _parse(v, kind, default):
    if v is None:
        return default
    try:
        x = kind(v)
    except ValueError:
        return default
    if kind is int and x < 0:
        return default  # Rust's u64 parse refuses negatives
    return x


@dataclass
class _Placed:
    #: Work per core (wall ns) the origin sent to the node, as of ``at``.
    backlog_ns: float = 0.0
    at: int = 0


@dataclass
class WaitEstimate:
    state_ns: float = 0.0
    own_ns: float = 0.0
    step_ns: float = 0.0

    def total_ns(self) -> float:
        return self.state_ns + self.own_ns + self.step_ns


class WaitModel:
    """Per-session wait model: node specs, network, running mean service estimate, each origin's
    recent placements, and this Step's placements."""

    def __init__(self, hello: pb.Hello):
        n = len(hello.nodes)
        mean = _parse(hello.parameters.get("mean_service_ns"), float, 0.0)
        if not (math.isfinite(mean) and mean > 0.0):
            mean = 0.0
        self.n = n
        self.cores = [float(max(s.cores, 1)) for s in hello.nodes]
        self.speed = [s.speed if s.speed > 0.0 else 1.0 for s in hello.nodes]
        self.net = NetInfo(hello)
        self.mean_service_ns = mean
        self.seen = 1.0 if mean > 0.0 else 0.0
        self.placed = [_Placed() for _ in range(n * n)]
        self.step_total = [0.0] * n
        self.step_log: list = []
        self.step_time = 0
        # Queued bytes on each node's uplink and downlink at the current Step (view.rs LinkView).
        self.up_queue = [0] * n
        self.down_queue = [0] * n

    def begin_step(self, step: pb.Step) -> None:
        for t in step.tasks:
            self.seen = min(self.seen + 1.0, SERVICE_MEAN_WINDOW)
            self.mean_service_ns += (float(t.service_estimate_ns) - self.mean_service_ns) / self.seen
        self.step_total = [0.0] * self.n
        self.step_log.clear()
        self.step_time = step.sim_time_ns
        self.up_queue = [0] * self.n
        self.down_queue = [0] * self.n
        for link in step.links:
            if link.node_id < self.n:
                if link.uplink:
                    self.up_queue[link.node_id] = link.queue_bytes
                else:
                    self.down_queue[link.node_id] = link.queue_bytes

    def own_in_step(self, o: int, j: int) -> float:
        return sum(w for lo, lj, w in self.step_log if lo == o and lj == j)

    def wait(self, step: pb.Step, o: int, j: int) -> WaitEstimate:
        now = step.sim_time_ns
        k, v = self.cores[j], self.speed[j]
        others_in_step = max(self.step_total[j] - self.own_in_step(o, j), 0.0)
        if j == o:
            own = step.nodes[o]
            sth = own.sth if own.HasField("sth") else None
            tasks = float(sth.total_tasks if sth else 0)
            load_ns = float(sth.sum_load_us if sth else 0) * 1000.0
            base = 0.0 if tasks < k else load_ns / k
            return WaitEstimate(state_ns=base, own_ns=self.own_in_step(o, o), step_ns=others_in_step)
        state_ns = 0.0
        hb_sent = 0
        got = GstView(step.nodes[o]).get(j)
        if got is not None:
            hb, age = got
            hb_sent = max(now - age, 0)
            q = float(hb.queue_len)
            if not hb.idle() and q >= k:
                state_ns = (q - k + 1.0) * self.mean_service_ns / (v * k)
            state_ns = max(state_ns - float(age), 0.0)
        p = self.placed[o * self.n + j]
        if p.at + self.net.one_way_ns <= hb_sent and hb_sent > 0:
            own_ns = 0.0
        else:
            own_ns = max(p.backlog_ns - float(max(now - p.at, 0)), 0.0)
        return WaitEstimate(state_ns=state_ns, own_ns=own_ns, step_ns=others_in_step)

    def work_per_core_ns(self, j: int, service_estimate_ns: int) -> float:
        return float(service_estimate_ns) / self.speed[j] / self.cores[j]

    def record(self, o: int, j: int, service_estimate_ns: int) -> None:
        per_core = self.work_per_core_ns(j, service_estimate_ns)
        now = self.step_time
        self.step_total[j] += per_core
        self.step_log.append((o, j, per_core))
        if j != o:
            p = self.placed[o * self.n + j]
            left = max(p.backlog_ns - float(max(now - p.at, 0)), 0.0)
            p.backlog_ns, p.at = left + per_core, now

    def transfer_ns(self, o: int, j: int, size_bytes: int) -> float:
        if o == j:
            return 0.0
        queued = self.up_queue[o] + self.down_queue[j]
        queue_ns = float(queued) * 8.0 / self.net.link_gbps if self.net.link_gbps > 0.0 else 0.0
        return float(self.net.transfer_ns(o, j, size_bytes)) + queue_ns

    def slack_ns(self, now: int, wait: WaitEstimate, transfer_ns: float, service_estimate_ns: int,
                 deadline_ns: int, j: int) -> float:
        start = max(transfer_ns, wait.total_ns())
        finish = float(now) + start + float(service_estimate_ns) / self.speed[j]
        return float(deadline_ns) - finish
