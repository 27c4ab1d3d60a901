#!/usr/bin/env python3
"""Writes the shared golden vectors straight from the design's formulas.

Deliberately independent of both implementations (floats and struct.pack here, integer bit
tricks in Rust and C++), so a shared mistake cannot hide. Re-run only when those formulas change:
    python3 proto/testdata/generate.py

Besides the STH and heartbeat vectors (design.md section 4) it writes a golden task trace: racks
of nodes (design.md section 6: EDF with early drop, lazy pruning and cooperative preemption, FCFS,
processor sharing; k cores of speed v; context-switch cost), tasks placed on them, and the
completion or drop time of every task as computed by `NodeModel` below, a small reference
scheduler written from the rules in its docstring with exact rational arithmetic. Both the
Rust node model (rack-sim) and the C++ node scheduler (omnetpp/core) must reproduce it
exactly (rack-sim/tests/golden_trace.rs, omnetpp/tests/golden_task_trace_test.cc).
"""
import heapq
import math
import os
import random
import struct
from collections import deque
from fractions import Fraction

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


def heartbeat_load_vectors():
    """load_factor = tasks in system (ingress + ready + running) / cores, x 1000 (design.md section 4)."""
    rows = [(0, 1), (0, 4), (1, 1), (1, 4), (3, 16), (1, 3), (2, 3), (5, 4), (16, 16),
            (17, 16), (100, 3), (65, 1), (66, 1), (70000, 1), (10**6, 256), (7, 256)]
    with open(os.path.join(HERE, "heartbeat_load.csv"), "w") as f:
        f.write("tasks_in_system,cores,load_factor\n")
        for tasks, cores in rows:
            f.write(f"{tasks},{cores},{load_milli(tasks / cores)}\n")


def estimate_vectors():
    """Service estimates (rack-sim ServiceEstimate::apply, C++ ServiceEstimate::estimateNs):
    exact: the service; class_mean: the class mean (the service when none); noisy: service x
    exp(sigma x z) for a standard normal z; rounded half up, at least 1 ns."""
    rows = [
        ("exact", 0.5, 12345, None, 0.7), ("exact", 0.5, 1, 2000.0, -3.0),
        ("class_mean", 0.5, 12345, 25000.4, 0.0), ("class_mean", 0.5, 7, 1999.5, 1.0),
        ("class_mean", 0.5, 777, None, 0.0), ("class_mean", 0.5, 5, 0.2, 0.0),
        ("noisy", 0.5, 10000, None, 0.0), ("noisy", 0.5, 10000, None, 1.0),
        ("noisy", 0.5, 10000, None, -1.0), ("noisy", 0.3, 123456, 5.0, 2.2),
        ("noisy", 2.0, 10000, None, -9.0), ("noisy", 0.0, 4242, None, 3.3),
        ("noisy", 0.5, 1000000, None, 0.1234), ("noisy", 1.5, 3, None, 0.31),
    ]
    with open(os.path.join(HERE, "estimate_vectors.csv"), "w") as f:
        f.write("model,sigma,service_ns,class_mean_ns,z,estimate_ns\n")
        for model, sigma, service, mean, z in rows:
            if model == "exact":
                e = service
            else:
                x = (service if mean is None else mean) if model == "class_mean" \
                    else service * math.exp(sigma * z)
                e = max(1, int(math.floor(x + 0.5)))
            f.write(f"{model},{sigma!r},{service},{'' if mean is None else repr(mean)},"
                    f"{z!r},{e}\n")


# --- golden task trace ------------------------------------------------------------------

U64_MAX = 2**64 - 1


def wall_ns(ref_ns, speed):
    """Work on a node of `speed`: ref / speed in IEEE double, rounded half away from zero
    (the one float step of the model; Rust's f64::round, C++'s llround), at least 1 ns."""
    if speed == 1.0:
        return max(1, ref_ns)
    x = ref_ns / speed
    return max(1, int(math.floor(x + 0.5)))


class Job:
    def __init__(self, task, speed):
        self.id = task["task_id"]
        self.deadline = task["deadline_ns"]
        self.work = wall_ns(task["service_ns"], speed)  # true work left (drives the core)
        self.est = wall_ns(task["estimate_ns"], speed)  # estimated work left (admission)

    def edf_key(self):
        return (self.deadline, self.id)


class NodeModel:
    """One node, design.md section 6. At an instant t, in this order:
    1. every job whose work ends at t completes (on time if t <= deadline, else missed);
       processor sharing: the virtual clock advances to t and every job that has all its
       work completes. If anything completed, the dispatcher runs once.
    2. the tasks that land at t enter the ingress ring (in task-id order), and the dispatcher
       polls while the ring is not empty: it admits up to `ingress_batch` tasks (early drop:
       a task with deadline < t + estimated work is dropped at t), then dispatches.
    Dispatch, EDF: each idle core (in index order) takes the head of the ready queue, whose
    order is (deadline, task id); a head past its deadline (deadline < t) is dropped at t
    instead (lazy pruning). Then, if every core is busy and preemption is on: the victim is
    the running job last in EDF order; if the head's deadline + threshold < the victim's
    deadline, the victim goes back to the queue with its work left (at least 1 ns; the work
    done so far is t - its work start, 0 while still switching) and the head starts on that
    core after the context switch; repeat. A job started on an idle core (new or resumed) pays
    no switch. FCFS: idle cores take the oldest admitted task (pruning too if enabled).
    Processor sharing: n jobs on k cores each progress at min(1, k/n) work-ns per ns; a job
    leaves at the first whole ns at which it has all its work."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.kind = cfg["discipline"]
        self.cores = [None] * cfg["cores"]  # (job, work_start, end)
        self.ingress = deque()
        self.ready = []  # EDF heap of (key, job) or FCFS list
        self.ps = []  # [finish_v, seq, job]
        self.v = Fraction(0)
        self.last = 0
        self.seq = 0
        self.out = {}

    def record(self, job, kind, t):
        assert job.id not in self.out
        self.out[job.id] = (kind, t)

    # -- processor sharing
    def ps_rate(self):
        n, k = len(self.ps), self.cfg["cores"]
        return Fraction(1) if n <= k else Fraction(k, n)

    def ps_advance(self, t):
        if self.ps and t > self.last:
            self.v += (t - self.last) * self.ps_rate()
        self.last = t

    def next_event(self):
        if self.kind == "ps":
            if not self.ps:
                return None
            left = (min(e[0] for e in self.ps) - self.v) / self.ps_rate()
            return self.last + max(0, math.ceil(left))
        ends = [c[2] for c in self.cores if c is not None]
        return min(ends) if ends else None

    def complete_due(self, t):
        done = False
        if self.kind == "ps":
            self.ps_advance(t)
            for e in sorted(self.ps, key=lambda e: (e[0], e[1])):
                if e[0] <= self.v:
                    self.ps.remove(e)
                    self.record(e[2], "completed" if t <= e[2].deadline else "missed", t)
                    done = True
            if not self.ps:
                self.v = Fraction(0)
            return done
        for i, c in enumerate(self.cores):
            if c is not None and c[2] == t:
                job = c[0]
                self.record(job, "completed" if t <= job.deadline else "missed", t)
                self.cores[i] = None
                done = True
        return done

    # -- ready queue
    def pop_head(self, t):
        """The next runnable job, dropping late heads when pruning."""
        while self.ready:
            job = heapq.heappop(self.ready)[1] if self.kind == "edf" else self.ready.pop(0)
            if self.cfg["prune_late"] and job.deadline < t:
                self.record(job, "dropped", t)
                continue
            return job
        return None

    def peek_head(self, t):
        while self.ready:
            job = self.ready[0][1]
            if self.cfg["prune_late"] and job.deadline < t:
                heapq.heappop(self.ready)
                self.record(job, "dropped", t)
                continue
            return job
        return None

    def start(self, i, job, t, switch):
        ws = t + switch
        self.cores[i] = (job, ws, ws + job.work)

    def dispatch(self, t):
        if self.kind == "ps":
            return
        for i in range(len(self.cores)):
            if self.cores[i] is None:
                job = self.pop_head(t)
                if job is None:
                    break
                self.start(i, job, t, 0)
        if self.kind != "edf" or not self.cfg["preempt"] or any(c is None for c in self.cores):
            return
        while True:
            head = self.peek_head(t)
            if head is None:
                return
            vi = max(range(len(self.cores)), key=lambda i: self.cores[i][0].edf_key())
            victim, ws, _ = self.cores[vi]
            if head.deadline + self.cfg["preemption_threshold_ns"] >= victim.deadline:
                return
            done = max(0, t - ws)
            victim.work = max(1, victim.work - done)
            victim.est = max(0, victim.est - done)
            heapq.heappop(self.ready)
            heapq.heappush(self.ready, (victim.edf_key(), victim))
            self.start(vi, head, t, self.cfg["context_switch_ns"])

    def admit(self, t):
        if self.kind == "ps":
            self.ps_advance(t)
        for _ in range(self.cfg["ingress_batch"]):
            if not self.ingress:
                break
            job = self.ingress.popleft()
            if self.cfg["early_drop"] and job.deadline < t + job.est:
                self.record(job, "dropped", t)
            elif self.kind == "edf":
                heapq.heappush(self.ready, (job.edf_key(), job))
            elif self.kind == "fcfs":
                self.ready.append(job)
            else:
                self.seq += 1
                self.ps.append([self.v + job.work, self.seq, job])
        self.dispatch(t)

    def run(self, tasks):
        """tasks: this node's tasks; returns {task_id: (kind, finish_ns)}."""
        by_time = {}
        for task in sorted(tasks, key=lambda x: (x["arrival_ns"], x["task_id"])):
            by_time.setdefault(task["arrival_ns"], []).append(task)
        arrivals = sorted(by_time)
        a = 0
        while True:
            te = self.next_event()
            ta = arrivals[a] if a < len(arrivals) else None
            if te is None and ta is None:
                return self.out
            t = min(x for x in (te, ta) if x is not None)
            if te == t and self.complete_due(t):
                self.dispatch(t)
            if ta == t:
                for task in by_time[t]:
                    self.ingress.append(Job(task, self.cfg["speed"]))
                a += 1
                while self.ingress:
                    self.admit(t)


def node_cfg(discipline, cores, speed, **kw):
    edf = discipline == "edf"
    cfg = {
        "discipline": discipline, "cores": cores, "speed": speed,
        "early_drop": edf, "prune_late": edf, "preempt": edf,
        "preemption_threshold_ns": 5000, "context_switch_ns": 2000, "ingress_batch": 16,
    }
    cfg.update(kw)
    return cfg


FAST = dict(cores=4, speed=1.0)
SLOW = dict(cores=16, speed=0.2)

# Racks of the golden trace: (name, nodes, tasks, mean gap between arrival instants in ns).
CASES = [
    ("edf-1core", [node_cfg("edf", 1, 1.0)], 220, 45000),
    ("edf-4core", [node_cfg("edf", **FAST)], 260, 11000),
    ("hetero-edf", [node_cfg("edf", **FAST)] * 2 + [node_cfg("edf", **SLOW)] * 3, 500, 2700),
    ("hetero-fcfs", [node_cfg("fcfs", **FAST)] * 2 + [node_cfg("fcfs", **SLOW)] * 3, 400, 2700),
    ("ps", [node_cfg("ps", 1, 1.0), node_cfg("ps", 4, 0.5), node_cfg("ps", 3, 0.3)], 300, 15000),
    ("edf-variants", [
        node_cfg("edf", 2, 1.0, early_drop=False),
        node_cfg("edf", 2, 1.0, preempt=False),
        node_cfg("edf", 3, 2.0, preemption_threshold_ns=0, context_switch_ns=0, ingress_batch=4),
        node_cfg("edf", 1, 0.3, prune_late=False, context_switch_ns=3500),
    ], 400, 12000),
    ("fcfs-shedding", [node_cfg("fcfs", 2, 1.0, early_drop=True, prune_late=True),
                       node_cfg("ps", 2, 1.0, early_drop=True)], 200, 11000),
]


def make_tasks(rng, n_nodes, count, gap):
    """Arrival instants with clumps (up to 40 tasks at one instant, so ingress batches
    split), heavy-ish service, log-normal estimates, deadlines F x estimate with ties and some
    infinite ones; uniform placements."""
    tasks, t = [], 0
    shared_deadlines = []
    while len(tasks) < count:
        t += 1 + int(rng.expovariate(1.0 / gap))
        clump = rng.choice([1, 1, 1, 1, 2, 3, 5]) if rng.random() > 0.04 else rng.randint(17, 40)
        for _ in range(min(clump, count - len(tasks))):
            service = max(1, int(rng.paretovariate(1.6) * 4000) if rng.random() < 0.8
                          else int(rng.expovariate(1 / 20000)) + 1)
            service = min(service, 400_000)
            estimate = max(1, int(service * math.exp(rng.gauss(0, 0.5)) + 0.5))
            r = rng.random()
            if r < 0.05:
                deadline = U64_MAX
            elif r < 0.15 and shared_deadlines:
                deadline = rng.choice(shared_deadlines)  # ties: EDF's task-id rule
                deadline = max(deadline, t + 1)
            else:
                f = rng.choice([1.5, 3.0, 3.0, 10.0])
                deadline = t + int(f * estimate + 0.5)
                shared_deadlines = (shared_deadlines + [deadline])[-8:]
            tasks.append({
                "task_id": len(tasks), "arrival_ns": t, "origin": rng.randrange(n_nodes),
                "node": rng.randrange(n_nodes), "service_ns": service, "estimate_ns": estimate,
                "deadline_ns": deadline, "size_bytes": 0, "class": int(rng.random() < 0.1),
            })
    return tasks


def task_trace_vectors():
    node_rows, task_rows = [], []
    stats = {}
    for ci, (name, nodes, count, gap) in enumerate(CASES):
        rng = random.Random(1000 + ci)
        tasks = make_tasks(rng, len(nodes), count, gap)
        result = {}
        for ni, cfg in enumerate(nodes):
            node_rows.append((name, ni, cfg))
            result.update(NodeModel(cfg).run([x for x in tasks if x["node"] == ni]))
        assert len(result) == len(tasks)
        for x in tasks:
            kind, finish = result[x["task_id"]]
            task_rows.append((name, x, kind, finish))
            stats.setdefault(name, {}).setdefault(kind, 0)
            stats[name][kind] += 1
    with open(os.path.join(HERE, "task_trace_nodes.csv"), "w") as f:
        f.write("case,node,discipline,cores,speed,early_drop,prune_late,preempt,"
                "preemption_threshold_ns,context_switch_ns,ingress_batch\n")
        for name, ni, c in node_rows:
            f.write(f"{name},{ni},{c['discipline']},{c['cores']},{c['speed']!r},"
                    f"{int(c['early_drop'])},{int(c['prune_late'])},{int(c['preempt'])},"
                    f"{c['preemption_threshold_ns']},{c['context_switch_ns']},"
                    f"{c['ingress_batch']}\n")
    with open(os.path.join(HERE, "task_trace.csv"), "w") as f:
        f.write("case,task_id,arrival_ns,origin,node,service_ns,estimate_ns,deadline_ns,"
                "size_bytes,class,outcome,finish_ns\n")
        for name, x, kind, finish in task_rows:
            f.write(f"{name},{x['task_id']},{x['arrival_ns']},{x['origin']},{x['node']},"
                    f"{x['service_ns']},{x['estimate_ns']},{x['deadline_ns']},"
                    f"{x['size_bytes']},{x['class']},{kind},{finish}\n")
    for name, k in stats.items():
        print(f"{name}: {k}")


if __name__ == "__main__":
    sth_vectors()
    heartbeat_vectors()
    percentile_vectors()
    heartbeat_load_vectors()
    estimate_vectors()
    task_trace_vectors()
