"""The golden reward vectors of proto/testdata/reward_vectors.csv (design.md section 7's formulas in
decimal arithmetic, proto/testdata/generate_rewards.py), shared with the Rust policies'
tests/reward_golden.rs: the adapter's rewards are the Rust learners' rewards."""

import csv
from pathlib import Path

import pytest

from malcolm.bridge.v1 import bridge_pb2 as pb
from malcolm_gym import rewards as rw

VECTORS = Path(__file__).resolve().parents[2] / "proto" / "testdata" / "reward_vectors.csv"
KIND = {
    "completed": pb.OUTCOME_KIND_COMPLETED,
    "missed": pb.OUTCOME_KIND_MISSED,
    "dropped": pb.OUTCOME_KIND_DROPPED,
    "unspecified": pb.OUTCOME_KIND_UNSPECIFIED,
}


def rows():
    with open(VECTORS) as f:
        return list(csv.DictReader(f))


def config(r):
    return rw.RewardConfig(
        kind=r["reward"], r_goodput=float(r["r_goodput"]), lam=float(r["lambda"]), eta=float(r["eta"]),
        beta=float(r["beta"]), gamma=float(r["gamma"]), r_min=float(r["r_min"]),
        linear_scale_per_us=float(r["linear_scale_per_us"]), step_hit=float(r["step_hit"]),
        step_miss=float(r["step_miss"]),
    )


def close(got, want):
    # reward.rs's tolerance: a few ulps of log1p/exp and the ns -> us divisions.
    return abs(got - want) <= 1e-9 * (1 + abs(want))


def test_the_vectors_cover_every_reward_and_outcome_kind():
    rs = rows()
    assert len(rs) >= 60
    assert {(r["reward"], r["outcome"]) for r in rs} == {(k, o) for k in rw.KINDS for o in KIND}


@pytest.mark.parametrize("r", rows(), ids=lambda r: r["case"])
def test_golden_reward(r):
    kind, finish, deadline = KIND[r["outcome"]], int(r["finish_ns"]), int(r["deadline_ns"])
    service = float(r["service_on_node_us"])
    slack = rw.outcome_slack_us(kind, finish, deadline, service)
    assert close(slack, float(r["slack_us"])), (slack, r["slack_us"])
    got = rw.task_reward(config(r), kind, finish, deadline, int(r["latency_ns"]), service)
    assert close(got, float(r["expected"])), (got, r["expected"])
    # The same through a TaskOutcome message, as the env scores outcomes.
    o = pb.TaskOutcome(kind=kind, finish_ns=finish, deadline_ns=deadline, latency_ns=int(r["latency_ns"]))
    assert rw.outcome_reward(config(r), o, service) == got


def test_reward_configs():
    assert rw.RewardConfig.of("step").kind == "step"
    assert rw.RewardConfig.of({"kind": "linear", "linear_scale_per_us": 1.0}).linear_scale_per_us == 1.0
    with pytest.raises(ValueError, match="reward kind"):
        rw.RewardConfig.of("exponential")
