#!/usr/bin/env python3
"""Writes the shared golden vectors straight from SPEC section 4's formulas.

Deliberately independent of both implementations (floats and struct.pack here, integer bit
tricks in Rust and C++), so a shared mistake cannot hide. Re-run only when the SPEC changes:
    python3 proto/testdata/generate.py
"""
import math
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
I32_MAX = 2**31 - 1


def bucket(s):
    if s < 0:
        return 0
    if s < 20:
        return 1 + s // 2
    return min(15, 11 + math.floor(math.log2(s / 20)))


def sth_vectors():
    edges = {-(2**31), -1000, -1, 0, 1, 2, 3, 18, 19, 20, 21, I32_MAX}
    for k in range(0, 6):
        e = 20 * 2**k
        edges |= {e - 1, e, e + 1}
    edges |= {1000, 10_000, 32767, 32768, 1_000_000}
    with open(os.path.join(HERE, "sth_buckets.csv"), "w") as f:
        f.write("slack_us,bucket\n")
        for s in sorted(edges):
            f.write(f"{s},{bucket(s)}\n")


def sat(v, lo, hi):
    return max(lo, min(hi, v))


def load_milli(rho):
    if rho != rho or rho <= 0:
        return 0
    m = math.floor(rho * 1000 + 0.5)
    return min(m, 65535)


def heartbeat_vectors():
    rows = [
        # node, flags, rho, p10, p50, qlen, version
        (0, 0, 0.0, 0, 0, 0, 0),
        (1, 0x02, 0.0, 32767, 32767, 0, 7),
        (2, 0x01, 0.95, -12, 4, 17, 3),
        (3, 0x00, 0.5, 20, 160, 1000, 1),
        (255, 0x03, 1.234, -1, -1, 1, 0xFFFFFFFF),
        (17, 0x01, 70.0, -40000, 40000, 5_000_000_000, 42),   # all saturating
        (9, 0x00, 65.535, 32767, -32768, 4294967295, 0),       # exact limits
        (9, 0x00, 65.5355, 32768, -32769, 4294967296, 0),      # one past the limits
        (4, 0x00, -0.3, -2**40, 2**40, 12, 5),                 # negative rho -> 0
        (5, 0x00, 0.0005, 1, 2, 3, 4),                         # rounds half up -> 1
        (6, 0x02, 0.0004, 300, 320, 0, 0x01020304),
    ]
    with open(os.path.join(HERE, "heartbeat_vectors.csv"), "w") as f:
        f.write("node_id,flags,rho,slack_p10_us,slack_p50_us,queue_len,policy_version,hex\n")
        for node, flags, rho, p10, p50, q, ver in rows:
            b = struct.pack(
                "<BBHhhII",
                node,
                flags,
                load_milli(rho),
                sat(p10, -32768, 32767),
                sat(p50, -32768, 32767),
                sat(q, 0, 2**32 - 1),
                ver,
            )
            assert len(b) == 16
            f.write(f"{node},{flags},{rho!r},{p10},{p50},{q},{ver},{b.hex()}\n")


def lower_edge(b):
    if b < 11:
        return (b - 1) * 2
    return 20 * 2 ** (b - 11)


def percentile(slacks, pct):
    if not slacks:
        return None
    rank = max(1, -(-len(slacks) * pct // 100))
    b = sorted(bucket(s) for s in slacks)[rank - 1]
    return min(slacks) if b == 0 else lower_edge(b)


def percentile_vectors():
    cases = [
        [],
        [5],
        [-3],
        [-7, 3, 3, 25, 100, 1000, 5, 5, 5, 5],
        list(range(0, 40)),
        [400] * 9 + [-50],
        [19, 20, 39, 40, 79, 80, 159, 160, 319, 320],
        [-1] * 5 + [1] * 5,
        [10**6] * 3,
    ]
    with open(os.path.join(HERE, "sth_percentiles.csv"), "w") as f:
        f.write("slacks_us,total,min_slack_us,p10_us,p50_us,panic,heartbeat_p10,heartbeat_p50\n")
        for c in cases:
            p10, p50 = percentile(c, 10), percentile(c, 50)
            hb10 = 32767 if p10 is None else sat(p10, -32768, 32767)
            hb50 = 32767 if p50 is None else sat(p50, -32768, 32767)
            mins = min(c) if c else 0
            f.write(
                f"{';'.join(map(str, c))},{len(c)},{mins},"
                f"{'' if p10 is None else p10},{'' if p50 is None else p50},"
                f"{int(any(s < 0 for s in c))},{hb10},{hb50}\n"
            )


if __name__ == "__main__":
    sth_vectors()
    heartbeat_vectors()
    percentile_vectors()
