//! The simulator's error type.

/// Why the simulator refused a scenario, a trace or a placement.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown scenario {0:?} (known: {known})", known = crate::scenario::NAMES.join(", "))]
    UnknownScenario(String),
    #[error("invalid scenario: {0}")]
    InvalidScenario(String),
    #[error("task trace: {0}")]
    Trace(String),
    #[error("no step is waiting for a placement")]
    NoStepOutstanding,
    #[error("placement for step {got} but step {expected} is waiting")]
    WrongStep { expected: u64, got: u64 },
    #[error("placement has {targets} targets for {tasks} tasks")]
    TargetCount { targets: usize, tasks: usize },
    #[error("placement has {hold} hold_ns entries for {tasks} tasks (must be 0 or equal)")]
    HoldCount { hold: usize, tasks: usize },
    #[error("target node {target} of task {index} is out of range (rack of {nodes} nodes)")]
    InvalidTarget {
        index: usize,
        target: u32,
        nodes: usize,
    },
}
