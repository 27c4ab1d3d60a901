"""Ports of the trivial Rust baselines (``policies/src/baselines/random.rs`` and
``round_robin.rs``): the same choices on the same seed, so runs through the adapter can be
compared with ``agent-server eval`` and ``serve`` figure for figure.

Every baseline here is built from the session's ``Hello`` and its seed (``Hello.seed``, as
agent-server seeds a session's policy) and maps a ``Step`` to one target per pending task.
"""

from __future__ import annotations

from malcolm.bridge.v1 import bridge_pb2 as pb
from .rng import ChaChaRng


class RandomPolicy:
    """Uniformly random placement (``random.rs``)."""

    def __init__(self, hello: pb.Hello, seed: int):
        self.nodes = len(hello.nodes)
        self.rng = ChaChaRng.seed_from_u64(seed)

    def decide(self, step: pb.Step) -> list:
        return [self.rng.random_range(0, self.nodes) for _ in step.tasks]


class RoundRobin:
    """Node 0, 1, ..., N-1, 0, ... across all origins of the session (``round_robin.rs``)."""

    def __init__(self, hello: pb.Hello, seed: int = 0):
        self.nodes = len(hello.nodes)
        self.next = 0

    def decide(self, step: pb.Step) -> list:
        out = []
        for _ in step.tasks:
            out.append(self.next)
            self.next = (self.next + 1) % self.nodes
        return out
