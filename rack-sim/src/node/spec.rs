//! What a node is made of: its queue discipline, core count and speed, and the timing
//! constants (ingress batch, preemption threshold, context switch) shared by a rack.

use malcolm_proto::bridge;
use serde::{Deserialize, Serialize};

/// Tasks moved from the ingress ring to the ready queue per poll (the design's drain batch).
pub const DEFAULT_INGRESS_BATCH: usize = 16;
/// Preempt only if the new head's deadline is this much earlier (design 3.3.3: no thrashing).
pub const DEFAULT_PREEMPTION_THRESHOLD_NS: u64 = 5_000;
/// Cost of switching a core to a preempting task (cache pollution plus the switch itself).
pub const DEFAULT_CONTEXT_SWITCH_NS: u64 = 2_000;
/// Float slack of the processor-sharing virtual clock, in ns of work and of time: far below a
/// nanosecond, far above the rounding error of a busy period's clock (the clock restarts at
/// 0 whenever the node empties). The C++ node scheduler uses the same value.
pub const PS_EPSILON: f64 = 1e-4;

/// Which queue a node runs, and whether it sheds late work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DisciplineKind {
    Edf,
    Fcfs,
    ProcessorSharing,
}

/// Intra-node discipline plus its admission and pruning switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discipline {
    pub kind: DisciplineKind,
    /// Drop a task at admission when `deadline < now + estimated work` (it cannot make it, as
    /// far as the node can tell).
    pub early_drop: bool,
    /// Drop a task that reaches the head of the queue after its deadline.
    pub prune_late: bool,
    /// Cooperative preemption (EDF only).
    pub preempt: bool,
}

impl Discipline {
    /// Malcolm-Strict's EDF: early drop, lazy pruning, cooperative preemption.
    pub fn edf() -> Self {
        Self {
            kind: DisciplineKind::Edf,
            early_drop: true,
            prune_late: true,
            preempt: true,
        }
    }

    /// The classic system: first come, first served, nothing is ever dropped.
    pub fn fcfs() -> Self {
        Self {
            kind: DisciplineKind::Fcfs,
            early_drop: false,
            prune_late: false,
            preempt: false,
        }
    }

    /// Egalitarian processor sharing over the k cores, nothing dropped.
    pub fn processor_sharing() -> Self {
        Self {
            kind: DisciplineKind::ProcessorSharing,
            early_drop: false,
            prune_late: false,
            preempt: false,
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "edf" => Some(Self::edf()),
            "fcfs" => Some(Self::fcfs()),
            "ps" | "processor-sharing" => Some(Self::processor_sharing()),
            _ => None,
        }
    }

    pub fn to_proto(self) -> bridge::Discipline {
        match self.kind {
            DisciplineKind::Edf => bridge::Discipline::Edf,
            DisciplineKind::Fcfs => bridge::Discipline::Fcfs,
            DisciplineKind::ProcessorSharing => bridge::Discipline::ProcessorSharing,
        }
    }
}

/// Static description of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    pub kind: String,
    pub cores: u32,
    /// Relative core speed; service time on this node is `service / speed`.
    pub speed: f64,
    pub discipline: Discipline,
}

impl NodeSpec {
    /// Speed 1.0 x 4 cores (design.md section 9).
    pub fn fast(discipline: Discipline) -> Self {
        Self {
            kind: "fast".into(),
            cores: 4,
            speed: 1.0,
            discipline,
        }
    }

    /// Speed 0.2 x 16 cores (design.md section 9).
    pub fn slow(discipline: Discipline) -> Self {
        Self {
            kind: "slow".into(),
            cores: 16,
            speed: 0.2,
            discipline,
        }
    }

    /// One core of speed 1 (queueing-theory checks).
    pub fn single(discipline: Discipline) -> Self {
        Self {
            kind: "single".into(),
            cores: 1,
            speed: 1.0,
            discipline,
        }
    }

    /// Capacity in reference cores.
    pub fn capacity(&self) -> f64 {
        self.cores as f64 * self.speed
    }

    /// Wall time on this node of `service_ns` of reference work: `service / speed` in IEEE
    /// double, rounded half away from zero, at least 1 ns (the C++ node scheduler rounds the
    /// same way).
    pub fn wall_ns(&self, service_ns: u64) -> u64 {
        if self.speed == 1.0 {
            return service_ns.max(1);
        }
        ((service_ns as f64 / self.speed).round() as u64).max(1)
    }
}

/// Timing constants shared by the nodes of a rack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTiming {
    pub ingress_batch: usize,
    pub preemption_threshold_ns: u64,
    pub context_switch_ns: u64,
}

impl Default for NodeTiming {
    fn default() -> Self {
        Self {
            ingress_batch: DEFAULT_INGRESS_BATCH,
            preemption_threshold_ns: DEFAULT_PREEMPTION_THRESHOLD_NS,
            context_switch_ns: DEFAULT_CONTEXT_SWITCH_NS,
        }
    }
}
