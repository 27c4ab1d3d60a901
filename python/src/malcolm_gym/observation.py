"""Observation and action spaces declared from a ``Hello``, and the mapping of a ``Step`` onto
them. The layout (indices are stable; the README's "Bring your own agent" section repeats it):

``obs["nodes"]``  float32 ``[N, 28]``, fresh state of every node:
    0..15 STH bucket counts (bucket 0: already late; design.md section 4), 16 tasks queued or
    running, 17 min slack (us), 18 remaining work (us), 19 PANIC flag, 20 IDLE flag,
    21 load factor (tasks in system / cores), 22 slack p10 (us), 23 slack p50 (us),
    24 queue length, 25 utilisation since the previous Step, 26 cores, 27 core speed.
``obs["gst"]``  float32 ``[N, N, 8]``: ``gst[i, j]`` is node i's stale view of node j (its
    Global State Table, present when node i originates a pending task): 0 known (1 when a
    heartbeat of j was received), 1 age (us), 2 PANIC, 3 IDLE, 4 load factor, 5 slack p10
    (us), 6 slack p50 (us), 7 queue length. Rows of nodes without a view are zero.
``obs["gst_mask"]``  int8 ``[N]``: 1 where ``gst[i]`` holds a view.
``obs["tasks"]``  float32 ``[T, 6]``, the pending tasks in the Step's order, padded to
    ``T = max_tasks``: 0 origin node, 1 slack to the deadline now (us), 2 service estimate on a
    speed-1 core (us), 3 time waited since arrival (us), 4 request size (bytes), 5 class
    (0 regular, 1 micro-burst).
``obs["task_mask"]``  int8 ``[T]``: 1 for the Step's tasks, 0 for padding.

Each column's bounds in the space are its wire field's (u32 counts, saturating i16 percentiles,
rho x 1000 in a u16), or the float32 range for 64-bit fields.

The action is ``MultiDiscrete([N] * T)``: a target node for every row of ``obs["tasks"]``;
entries of padding rows are ignored.
"""

from __future__ import annotations

import struct

import numpy as np
from gymnasium import spaces

from malcolm.bridge.v1 import bridge_pb2 as pb

#: Pending tasks the spaces have room for by default: rack-sim's and the OMNeT++ coordinator's
#: largest decision batch (DEFAULT_MAX_BATCH / maxTasksPerStep).
DEFAULT_MAX_TASKS = 64

NODE_FEATURES = 28
GST_FEATURES = 8
TASK_FEATURES = 6
STH_BUCKETS = 16

# Column indices, for code that reads observations by name.
N_TOTAL, N_MIN_SLACK, N_LOAD, N_PANIC, N_IDLE, N_RHO, N_P10, N_P50, N_QUEUE, N_UTIL, N_CORES, N_SPEED = range(16, 28)
G_KNOWN, G_AGE, G_PANIC, G_IDLE, G_RHO, G_P10, G_P50, G_QUEUE = range(8)
T_ORIGIN, T_SLACK, T_SERVICE, T_WAITED, T_SIZE, T_CLASS = range(6)

#: The 16-byte heartbeat payload (design.md section 4), little-endian and packed.
HEARTBEAT_DTYPE = np.dtype(
    [
        ("node_id", "u1"),
        ("flags", "u1"),
        ("load_factor", "<u2"),
        ("slack_p10_us", "<i2"),
        ("slack_p50_us", "<i2"),
        ("queue_len", "<u4"),
        ("reserved", "<u4"),
    ]
)
FLAG_PANIC = 0x01
FLAG_IDLE = 0x02
AGE_UNKNOWN = (1 << 64) - 1
_HEARTBEAT = struct.Struct("<BBHhhII")  # HEARTBEAT_DTYPE, for the per-Step hot path
_NO_VIEW = (0.0,) * GST_FEATURES


def decode_heartbeats(data: bytes) -> np.ndarray:
    """N x 16 bytes -> a structured array of N heartbeats."""
    if len(data) % HEARTBEAT_DTYPE.itemsize:
        raise ValueError(f"heartbeat bytes must be a multiple of 16, got {len(data)}")
    return np.frombuffer(data, dtype=HEARTBEAT_DTYPE)


# Bounds of every column, from the wire types of the fields they come from (u32 counts,
# saturating i16 percentiles, rho x 1000 in a u16); F32_MAX where the field is 64-bit.
F32_MAX = float(np.finfo(np.float32).max)
U32 = float(2**32 - 1)
I16 = (-32768.0, 32767.0)
RHO = (0.0, 65.535)
FLAG = (0.0, 1.0)
NODE_BOUNDS = (
    [(0.0, U32)] * STH_BUCKETS
    + [(0.0, U32), (-F32_MAX, F32_MAX), (0.0, F32_MAX), FLAG, FLAG, RHO, I16, I16, (0.0, U32), (0.0, F32_MAX),
       (0.0, U32), (0.0, F32_MAX)]
)
GST_BOUNDS = [FLAG, (0.0, F32_MAX), FLAG, FLAG, RHO, I16, I16, (0.0, U32)]
TASK_BOUNDS = [(0.0, 255.0), (-F32_MAX, F32_MAX), (0.0, F32_MAX), (-F32_MAX, F32_MAX), (0.0, U32), (0.0, U32)]


def _box(bounds, shape) -> spaces.Box:
    low = np.broadcast_to(np.array([b[0] for b in bounds], np.float32), shape)
    high = np.broadcast_to(np.array([b[1] for b in bounds], np.float32), shape)
    return spaces.Box(low.copy(), high.copy(), shape, np.float32)


def make_spaces(n: int, max_tasks: int) -> tuple[spaces.Dict, spaces.MultiDiscrete]:
    task_bounds = [(0.0, float(n - 1))] + TASK_BOUNDS[1:]
    obs = spaces.Dict(
        {
            "nodes": _box(NODE_BOUNDS, (n, NODE_FEATURES)),
            "gst": _box(GST_BOUNDS, (n, n, GST_FEATURES)),
            "gst_mask": spaces.MultiBinary(n),
            "tasks": _box(task_bounds, (max_tasks, TASK_FEATURES)),
            "task_mask": spaces.MultiBinary(max_tasks),
        }
    )
    act = spaces.MultiDiscrete(np.full(max_tasks, n, dtype=np.int64))
    return obs, act


class ObservationBuilder:
    """Fills observation arrays from Steps of one rack (static node columns from the Hello)."""

    def __init__(self, hello: pb.Hello, max_tasks: int):
        self.n = len(hello.nodes)
        self.max_tasks = max_tasks
        self.cores = np.array([max(s.cores, 1) for s in hello.nodes], dtype=np.float32)
        self.speed = np.array([s.speed if s.speed > 0 else 1.0 for s in hello.nodes], dtype=np.float32)

    def empty(self) -> dict:
        n, t = self.n, self.max_tasks
        nodes = np.zeros((n, NODE_FEATURES), np.float32)
        nodes[:, N_CORES] = self.cores
        nodes[:, N_SPEED] = self.speed
        return {
            "nodes": nodes,
            "gst": np.zeros((n, n, GST_FEATURES), np.float32),
            "gst_mask": np.zeros(n, np.int8),
            "tasks": np.zeros((t, TASK_FEATURES), np.float32),
            "task_mask": np.zeros(t, np.int8),
        }

    def build(self, step: pb.Step) -> dict:
        # Rows are gathered as Python lists and converted once: per-element numpy writes cost
        # a microsecond each, and this runs for every Step.
        n = self.n
        now = step.sim_time_ns
        rows = []
        views = []
        for i, ns in enumerate(step.nodes):
            if ns.HasField("sth"):
                s = ns.sth
                row = [*s.buckets, s.total_tasks, float(s.min_slack_us), float(s.sum_load_us)]
            else:
                row = [0.0] * (STH_BUCKETS + 3)
            if ns.HasField("heartbeat"):
                h = ns.heartbeat
                f = h.flags
                row += [f & FLAG_PANIC, (f & FLAG_IDLE) >> 1, h.load_factor_milli / 1000.0,
                        h.slack_p10_us, h.slack_p50_us, h.queue_len]
            else:
                row += [0.0] * 6
            row.append(ns.utilisation)
            rows.append(row)
            if ns.HasField("gst"):
                views.append((i, ns.gst))
        nodes = np.empty((n, NODE_FEATURES), np.float32)
        nodes[:, :N_CORES] = rows
        nodes[:, N_CORES] = self.cores
        nodes[:, N_SPEED] = self.speed
        gst = np.zeros((n, n, GST_FEATURES), np.float32)
        gst_mask = np.zeros(n, np.int8)
        for i, view in views:
            gst[i] = [
                (1.0, age / 1e3, f & FLAG_PANIC, (f & FLAG_IDLE) >> 1, lf / 1000.0, p10, p50, q)
                if age != AGE_UNKNOWN
                else _NO_VIEW
                for (_, f, lf, p10, p50, q, _), age in zip(_HEARTBEAT.iter_unpack(view.heartbeats), view.age_ns)
            ]
            gst_mask[i] = 1
        tasks = np.zeros((self.max_tasks, TASK_FEATURES), np.float32)
        k = len(step.tasks)
        if k:
            tasks[:k] = [
                (t.origin, (t.deadline_ns - now) / 1e3, t.service_estimate_ns / 1e3, (now - t.arrival_ns) / 1e3,
                 t.size_bytes, getattr(t, "class"))
                for t in step.tasks
            ]
        task_mask = np.zeros(self.max_tasks, np.int8)
        task_mask[:k] = 1
        return {"nodes": nodes, "gst": gst, "gst_mask": gst_mask, "tasks": tasks, "task_mask": task_mask}
