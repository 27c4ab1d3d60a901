"""Port of ``policies/src/baselines/slack_greedy.rs``, line by line: for each task, most urgent
first, estimate its finish time on candidate nodes from what the origin knows (``WaitModel``:
its fresh state, its stale Global State Table, its own recent placements, the work placed
earlier in the same Step by any origin). The task stays on its origin when it is feasible there;
otherwise it goes to the candidate where it keeps the most slack. Candidates are the origin plus
``DEFAULT_SAMPLE`` random other nodes, drawn from the same ChaCha8 stream as the Rust policy, so
the same seed gives the same placements."""

from __future__ import annotations

from typing import Optional

from malcolm.bridge.v1 import bridge_pb2 as pb
from .rng import ChaChaRng, sample_distinct
from .view import WaitModel

#: Other nodes compared with the origin per task.
DEFAULT_SAMPLE = 2
#: Stay on the origin when the estimated slack there is at least this (ns): any feasible.
DEFAULT_LOCAL_MARGIN_NS = 0.0


class SlackGreedy:
    def __init__(self, hello: pb.Hello, seed: int):
        #: Keep a task on its origin whenever its estimated slack there is at least this (ns);
        #: None always takes the node with the most slack.
        self.local_margin_ns: Optional[float] = DEFAULT_LOCAL_MARGIN_NS
        #: Compare the origin with this many random other nodes; None compares all.
        self.sample: Optional[int] = DEFAULT_SAMPLE
        self.rng = ChaChaRng.seed_from_u64(seed)
        self.model = WaitModel(hello)

    def decide(self, step: pb.Step) -> list:
        n = self.model.n
        targets = [0] * len(step.tasks)
        self.model.begin_step(step)
        # Most urgent first, so a tight task is not crowded out by a lax one of the same Step.
        order = sorted(range(len(step.tasks)), key=lambda i: (step.tasks[i].deadline_ns, i))
        now = step.sim_time_ns
        for i in order:
            t = step.tasks[i]
            o = t.origin
            if self.sample is not None:
                d = self.sample
                candidates = [c for c in sample_distinct(self.rng, n, d + 1) if c != o][:d]
            else:
                candidates = [j for j in range(n) if j != o]

            def slack_on(j, o=o, t=t):
                wait = self.model.wait(step, o, j)
                transfer = self.model.transfer_ns(o, j, t.size_bytes)
                return self.model.slack_ns(now, wait, transfer, t.service_estimate_ns, t.deadline_ns, j)

            local = slack_on(o)
            # The origin first: on a tie, keeping the task saves the network.
            best = (local, o)
            for c in candidates:
                s = slack_on(c)
                if s > best[0]:
                    best = (s, c)
            j = best[1]
            if self.local_margin_ns is not None and local >= self.local_margin_ns:
                j = o
            self.model.record(o, j, t.service_estimate_ns)
            targets[i] = j
        return targets
