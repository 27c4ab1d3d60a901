"""Per-task rewards (design.md section 7), the same functions as ``policies/src/reward.rs``: barrier
(Malcolm-Strict), and the ablation variants linear and step. Both implementations are checked
against the golden vectors in ``proto/testdata/reward_vectors.csv``.

Slack ``S = deadline - completion`` in microseconds. A dropped task never completes; it is
scored as a miss whose lateness is what it would at least have had if it had started when it
was dropped: ``S_drop = deadline - (drop_time + service_on_node)``, and at most
``-MIN_DROP_LATENESS_US``, so a drop is never rewarded like an on-time completion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from malcolm.bridge.v1 import bridge_pb2 as pb

#: A drop counts as at least this late, us, even when the service on the node is unknown.
MIN_DROP_LATENESS_US = 1.0

COMPLETED = pb.OUTCOME_KIND_COMPLETED
MISSED = pb.OUTCOME_KIND_MISSED
DROPPED = pb.OUTCOME_KIND_DROPPED
UNSPECIFIED = pb.OUTCOME_KIND_UNSPECIFIED

KINDS = ("barrier", "linear", "step")


@dataclass(frozen=True)
class RewardConfig:
    """Every constant of the per-task rewards; the defaults are ``reward.rs``'s ``DEFAULT_*``."""

    kind: str = "barrier"
    r_goodput: float = 1.0
    lam: float = 0.1
    eta: float = 0.1
    beta: float = 10.0
    gamma: float = 0.5
    r_min: float = -1000.0
    linear_scale_per_us: float = 0.01
    step_hit: float = 1.0
    step_miss: float = -100.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"reward kind {self.kind!r}: one of {', '.join(KINDS)}")

    @classmethod
    def of(cls, spec: "str | RewardConfig | dict | None") -> "RewardConfig":
        """A config from a kind name, a dict of fields, or a config."""
        if spec is None:
            return cls()
        if isinstance(spec, RewardConfig):
            return spec
        if isinstance(spec, str):
            return cls(kind=spec)
        if isinstance(spec, dict):
            return replace(cls(), **spec)
        raise TypeError(f"reward: a kind name, a dict or a RewardConfig, not {type(spec).__name__}")


def barrier(cfg: RewardConfig, slack_us: float) -> float:
    """``r_goodput + lam*ln(1 + eta*S)`` for ``S >= 0``, else ``-beta*exp(gamma*|S|)``, never
    below ``r_min``."""
    if slack_us >= 0.0:
        r = cfg.r_goodput + cfg.lam * math.log1p(cfg.eta * slack_us)
    else:
        try:
            r = -cfg.beta * math.exp(cfg.gamma * abs(slack_us))
        except OverflowError:  # Rust's exp gives +inf here; the clip absorbs either.
            r = -math.inf
    return max(r, cfg.r_min)


def linear(cfg: RewardConfig, latency_us: float) -> float:
    """``-latency * scale``."""
    return -max(latency_us, 0.0) * cfg.linear_scale_per_us


def step(cfg: RewardConfig, on_time: bool) -> float:
    return cfg.step_hit if on_time else cfg.step_miss


def outcome_slack_us(kind: int, finish_ns: int, deadline_ns: int, service_on_node_us: float) -> float:
    """Slack of a finished or dropped task in us (see the module doc for drops)."""
    deadline = deadline_ns / 1e3
    finish = finish_ns / 1e3
    if kind == DROPPED:
        return min(deadline - finish - max(service_on_node_us, 0.0), -MIN_DROP_LATENESS_US)
    return deadline - finish


def on_time(kind: int, finish_ns: int, deadline_ns: int) -> bool:
    if kind == COMPLETED:
        return True
    if kind in (DROPPED, MISSED):
        return False
    return finish_ns <= deadline_ns


def task_reward(
    cfg: RewardConfig,
    kind: int,
    finish_ns: int,
    deadline_ns: int,
    latency_ns: int,
    service_on_node_us: float,
) -> float:
    """The configured reward of one outcome. ``service_on_node_us`` is the task's service time
    on the node that ran or dropped it (estimate / speed); only drops use it."""
    if cfg.kind == "barrier":
        return barrier(cfg, outcome_slack_us(kind, finish_ns, deadline_ns, service_on_node_us))
    if cfg.kind == "linear":
        latency_us = latency_ns / 1e3
        if kind == DROPPED:
            # A drop has no completion latency: charge the latency it would at least have had.
            latency_us += max(service_on_node_us, MIN_DROP_LATENESS_US)
        return linear(cfg, latency_us)
    return step(cfg, on_time(kind, finish_ns, deadline_ns))


def outcome_reward(cfg: RewardConfig, outcome: pb.TaskOutcome, service_on_node_us: float) -> float:
    return task_reward(
        cfg, outcome.kind, outcome.finish_ns, outcome.deadline_ns, outcome.latency_ns, service_on_node_us
    )
