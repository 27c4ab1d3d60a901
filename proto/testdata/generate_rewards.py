#!/usr/bin/env python3
"""Writes proto/testdata/reward_vectors.csv: golden per-task rewards (design.md section 7) shared by
the Rust policies (policies/tests/reward_golden.rs) and the Python adapter
(python/tests/test_rewards_golden.py).

Deliberately independent of both implementations: the formulas are evaluated here in 50-digit
decimal arithmetic from the integer nanoseconds of the outcome (the implementations use binary
floats, log1p and exp), then rounded to the nearest double. Re-run only when design.md section 7 or
the reward constants change:
    python3 proto/testdata/generate_rewards.py

Formulas (slack S = deadline - completion in us; a drop is a miss whose lateness is what it
would at least have had if it had started when dropped, and at least 1 us):
    S      = (deadline - finish) / 1000                          completed, missed, unspecified
    S_drop = min((deadline - finish) / 1000 - max(service, 0), -1)              dropped
    barrier: R + lambda * ln(1 + eta * S)  if S >= 0,  else -beta * exp(gamma * |S|); >= R_min
    linear:  -scale * max(latency_us, 0), a drop charged latency + max(service, 1)
    step:    hit if on time (completed; unspecified with finish <= deadline) else miss
"""
import os
import random
from decimal import Decimal, getcontext

getcontext().prec = 50
HERE = os.path.dirname(os.path.abspath(__file__))
MIN_DROP_LATENESS_US = Decimal(1)

# design.md section 7 defaults (policies/src/reward.rs DEFAULT_*).
DEFAULTS = dict(
    r_goodput="1", lam="0.1", eta="0.1", beta="10", gamma="0.5", r_min="-1000",
    linear_scale_per_us="0.01", step_hit="1", step_miss="-100",
)
COLUMNS = [
    "case", "reward", "outcome", "finish_ns", "deadline_ns", "latency_ns", "service_on_node_us",
    "r_goodput", "lambda", "eta", "beta", "gamma", "r_min", "linear_scale_per_us", "step_hit",
    "step_miss", "slack_us", "expected",
]


def slack_us(outcome, finish_ns, deadline_ns, service_us):
    s = (Decimal(deadline_ns) - Decimal(finish_ns)) / 1000
    if outcome == "dropped":
        return min(s - max(Decimal(service_us), Decimal(0)), -MIN_DROP_LATENESS_US)
    return s


def barrier(p, s):
    if s >= 0:
        r = Decimal(p["r_goodput"]) + Decimal(p["lam"]) * (1 + Decimal(p["eta"]) * s).ln()
    else:
        r = -Decimal(p["beta"]) * (Decimal(p["gamma"]) * abs(s)).exp()
    return max(r, Decimal(p["r_min"]))


def reward(kind, outcome, finish_ns, deadline_ns, latency_ns, service_us, p):
    if kind == "barrier":
        return barrier(p, slack_us(outcome, finish_ns, deadline_ns, service_us))
    if kind == "linear":
        lat = Decimal(latency_ns) / 1000
        if outcome == "dropped":
            lat += max(Decimal(service_us), MIN_DROP_LATENESS_US)
        return -max(lat, Decimal(0)) * Decimal(p["linear_scale_per_us"])
    on_time = outcome == "completed" or (outcome == "unspecified" and finish_ns <= deadline_ns)
    return Decimal(p["step_hit"] if on_time else p["step_miss"])


def cases():
    """(name, reward kind, outcome, finish_ns, deadline_ns, latency_ns, service_us, params)."""
    d = DEFAULTS
    us = 1000
    rows = [
        # Barrier, default constants: the hand values of reward.rs's unit tests and around them.
        ("on time; S=0: exactly R_goodput", "barrier", "completed", 50 * us, 50 * us, 30 * us, "7", d),
        ("S=10: 1 + 0.1 ln 2", "barrier", "completed", 40 * us, 50 * us, 30 * us, "7", d),
        ("S=90: 1 + 0.1 ln 10", "barrier", "completed", 10 * us, 100 * us, 10 * us, "0", d),
        ("S=1 ns", "barrier", "completed", 49_999, 50_000, 49_999, "0", d),
        ("S=5 ms", "barrier", "completed", 1 * us, 5_001 * us, 1 * us, "0", d),
        ("late by 1 ns", "barrier", "missed", 50_001, 50_000, 50_001, "0", d),
        ("late by 2 us: -10 e", "barrier", "missed", 52 * us, 50 * us, 52 * us, "0", d),
        ("late by 8 us: -10 e^4", "barrier", "missed", 58 * us, 50 * us, 58 * us, "0", d),
        ("late by 9.21 us: just above the clip", "barrier", "missed", 59_210, 50_000, 59_210, "0", d),
        ("late by 10 us: clipped at R_min", "barrier", "missed", 60 * us, 50 * us, 60 * us, "0", d),
        ("late by 1 s: exp overflows; clipped", "barrier", "missed", 1_000_050 * us, 50 * us, 10**9, "0", d),
        ("drop at 40 us with 15 us of service and deadline 50: S=-5", "barrier", "dropped", 40 * us, 50 * us, 40 * us, "15", d),
        ("drop; service unknown: at least 1 us late", "barrier", "dropped", 40 * us, 50 * us, 40 * us, "0", d),
        ("drop long before the deadline: still 1 us late", "barrier", "dropped", 10 * us, 500 * us, 10 * us, "20", d),
        ("drop after the deadline", "barrier", "dropped", 70 * us, 50 * us, 70 * us, "3.5", d),
        ("drop; negative service treated as 0", "barrier", "dropped", 49 * us, 50 * us, 49 * us, "-4", d),
        ("unspecified kind on time", "barrier", "unspecified", 45 * us, 50 * us, 45 * us, "0", d),
        ("unspecified kind late", "barrier", "unspecified", 51 * us, 50 * us, 51 * us, "0", d),
        # Barrier with other constants (every constant must be honoured).
        ("custom: R=2 lambda=1 eta=1 and S=1", "barrier", "completed", 9 * us, 10 * us, 9 * us, "0",
         dict(d, r_goodput="2", lam="1", eta="1", beta="1", gamma="1", r_min="-5")),
        ("custom: beta=1 gamma=1; late 1 us: -e", "barrier", "missed", 11 * us, 10 * us, 11 * us, "0",
         dict(d, r_goodput="2", lam="1", eta="1", beta="1", gamma="1", r_min="-5")),
        ("custom: late 2 us; clipped at -5", "barrier", "missed", 12 * us, 10 * us, 12 * us, "0",
         dict(d, r_goodput="2", lam="1", eta="1", beta="1", gamma="1", r_min="-5")),
        ("custom: gentle wall gamma=0.05; late 40 us", "barrier", "missed", 90 * us, 50 * us, 90 * us, "0",
         dict(d, beta="2", gamma="0.05", r_min="-1e6")),
        # Linear ablation.
        ("linear; completed in 30 us", "linear", "completed", 30 * us, 50 * us, 30 * us, "0", d),
        ("linear; missed in 250 us", "linear", "missed", 250 * us, 50 * us, 250 * us, "0", d),
        ("linear; dropped at 40 us with 15 us of service", "linear", "dropped", 40 * us, 50 * us, 40 * us, "15", d),
        ("linear; dropped at once; service unknown", "linear", "dropped", 0, 50 * us, 0, "0", d),
        ("linear; scale 1 per us", "linear", "completed", 7_500, 9 * us, 7_500, "0",
         dict(d, linear_scale_per_us="1")),
        # Step ablation.
        ("step; on time", "step", "completed", 30 * us, 50 * us, 30 * us, "0", d),
        ("step; missed", "step", "missed", 51 * us, 50 * us, 51 * us, "0", d),
        ("step; dropped", "step", "dropped", 40 * us, 50 * us, 40 * us, "15", d),
        ("step; unspecified on time", "step", "unspecified", 50 * us, 50 * us, 50 * us, "0", d),
        ("step; unspecified late", "step", "unspecified", 50_001, 50 * us, 50_001, "0", d),
        ("step; custom hit 3 miss -7", "step", "missed", 60 * us, 50 * us, 60 * us, "0",
         dict(d, step_hit="3", step_miss="-7")),
    ]
    # A seeded sweep over the whole range of slacks the simulators produce.
    rng = random.Random(15)
    outcomes = ["completed", "missed", "dropped", "unspecified"]
    for i in range(48):
        kind = ("barrier", "linear", "step")[i % 3]
        outcome = outcomes[(i // 3) % 4]
        arrival = rng.randrange(0, 10**9)
        deadline = arrival + rng.choice([10, 30, 100, 1000]) * rng.randrange(1, 2000) * 10
        spread = rng.choice([100, 3_000, 30_000, 300_000, 3_000_000])
        finish = max(arrival, deadline + rng.randrange(-spread, spread))
        if outcome == "completed":
            finish = min(finish, deadline)
        elif outcome == "missed":
            finish = max(finish, deadline + 1)
        service = f"{rng.choice([0, 0.2, 1, 10, 57.3, 400]) * rng.random():.6f}"
        rows.append((f"sweep {i}", kind, outcome, finish, deadline, finish - arrival, service, d))
    return rows


def fmt(x: Decimal) -> str:
    # The double nearest to the decimal value, written so that it reads back exactly.
    return repr(float(x))


def main():
    path = os.path.join(HERE, "reward_vectors.csv")
    with open(path, "w") as f:
        f.write(",".join(COLUMNS) + "\n")
        for name, kind, outcome, finish, deadline, latency, service, p in cases():
            assert "," not in name
            s = slack_us(outcome, finish, deadline, service)
            r = reward(kind, outcome, finish, deadline, latency, service, p)
            row = [
                name, kind, outcome, str(finish), str(deadline), str(latency), service,
                p["r_goodput"], p["lam"], p["eta"], p["beta"], p["gamma"], p["r_min"],
                p["linear_scale_per_us"], p["step_hit"], p["step_miss"], fmt(s), fmt(r),
            ]
            f.write(",".join(row) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
