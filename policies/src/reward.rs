//! Reward functions (design.md section 7): barrier, linear and step for Malcolm-Strict and its
//! ablation, and the original Malcolm's load-variance reward. Pure functions of numbers.
//!
//! Slack `S = deadline - completion` in microseconds. A dropped task never completes; it is
//! scored as a miss whose lateness is what it would at least have had if it had started at the
//! moment it was dropped: `S_drop = deadline - (drop_time + service_on_node)`, and at most
//! `-DEFAULT_MIN_DROP_LATENESS_US` so a drop is never rewarded like an on-time completion
//! (see [`outcome_slack_us`]).

use malcolm_proto::bridge::{OutcomeKind, TaskOutcome};

/// Base reward of an on-time completion (design 4.1.1: "+1.0").
pub const DEFAULT_R_GOODPUT: f64 = 1.0;
/// Weight of the log bonus for slack kept (design.md section 7).
pub const DEFAULT_LAMBDA: f64 = 0.1;
/// Slack scale inside the log bonus, per us (design.md section 7).
pub const DEFAULT_ETA: f64 = 0.1;
/// Magnitude of the penalty at the deadline (design 4.1.2 typical value).
pub const DEFAULT_BETA: f64 = 10.0;
/// Steepness of the exponential wall, per us of lateness (design 4.1.2 typical value).
pub const DEFAULT_GAMMA: f64 = 0.5;
/// Hard clip of the penalty (design 4.1.2: R_min = -1000 keeps gradients bounded).
pub const DEFAULT_R_MIN: f64 = -1000.0;
/// Scale of the linear ablation reward: -latency in units of 100 us, so a typical task scores
/// around -0.1..-10 like the barrier's useful range.
pub const DEFAULT_LINEAR_SCALE_PER_US: f64 = 0.01;
/// Step ablation: reward of an on-time completion (design.md section 7).
pub const DEFAULT_STEP_HIT: f64 = 1.0;
/// Step ablation: reward of a miss or drop (design.md section 7).
pub const DEFAULT_STEP_MISS: f64 = -100.0;
/// A drop counts as at least this late, us, even when `service_on_node` is unknown (0).
pub const DEFAULT_MIN_DROP_LATENESS_US: f64 = 1.0;
/// Original Malcolm's migration cost C(a) of sending a task away from its origin (design 6.3.1).
pub const DEFAULT_MIGRATION_COST: f64 = 0.1;

/// Which per-task reward the learner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RewardKind {
    #[default]
    Barrier,
    Linear,
    Step,
}

/// Every constant of the per-task rewards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardConfig {
    pub kind: RewardKind,
    pub r_goodput: f64,
    pub lambda: f64,
    pub eta: f64,
    pub beta: f64,
    pub gamma: f64,
    pub r_min: f64,
    pub linear_scale_per_us: f64,
    pub step_hit: f64,
    pub step_miss: f64,
}

impl Default for RewardConfig {
    fn default() -> Self {
        Self {
            kind: RewardKind::Barrier,
            r_goodput: DEFAULT_R_GOODPUT,
            lambda: DEFAULT_LAMBDA,
            eta: DEFAULT_ETA,
            beta: DEFAULT_BETA,
            gamma: DEFAULT_GAMMA,
            r_min: DEFAULT_R_MIN,
            linear_scale_per_us: DEFAULT_LINEAR_SCALE_PER_US,
            step_hit: DEFAULT_STEP_HIT,
            step_miss: DEFAULT_STEP_MISS,
        }
    }
}

/// Barrier reward of a task finished with slack `slack_us` (design 4.1):
/// `r_goodput + lambda*ln(1 + eta*S)` for `S >= 0`, else `-beta*exp(gamma*|S|)`, never below
/// `r_min`.
pub fn barrier(cfg: &RewardConfig, slack_us: f64) -> f64 {
    let r = if slack_us >= 0.0 {
        cfg.r_goodput + cfg.lambda * (cfg.eta * slack_us).ln_1p()
    } else {
        // exp overflows to +inf for huge lateness; the clip below absorbs it.
        -cfg.beta * (cfg.gamma * slack_us.abs()).exp()
    };
    r.max(cfg.r_min)
}

/// Linear ablation reward: `-latency * scale`.
pub fn linear(cfg: &RewardConfig, latency_us: f64) -> f64 {
    -latency_us.max(0.0) * cfg.linear_scale_per_us
}

/// Step ablation reward: `step_hit` on time, `step_miss` otherwise.
pub fn step(cfg: &RewardConfig, on_time: bool) -> f64 {
    if on_time {
        cfg.step_hit
    } else {
        cfg.step_miss
    }
}

/// Slack of a finished or dropped task in us (see the module doc for drops).
/// `service_on_node_us` is the task's service time on the node that dropped it (estimate /
/// speed); only drops use it.
pub fn outcome_slack_us(outcome: &TaskOutcome, service_on_node_us: f64) -> f64 {
    let deadline = outcome.deadline_ns as f64 / 1e3;
    let finish = outcome.finish_ns as f64 / 1e3;
    match outcome.kind() {
        OutcomeKind::Dropped => {
            (deadline - finish - service_on_node_us.max(0.0)).min(-DEFAULT_MIN_DROP_LATENESS_US)
        }
        _ => deadline - finish,
    }
}

/// True when the task completed at or before its deadline.
pub fn on_time(outcome: &TaskOutcome) -> bool {
    match outcome.kind() {
        OutcomeKind::Completed => true,
        OutcomeKind::Dropped | OutcomeKind::Missed => false,
        OutcomeKind::Unspecified => outcome.finish_ns <= outcome.deadline_ns,
    }
}

/// The configured per-task reward of one outcome.
pub fn task_reward(cfg: &RewardConfig, outcome: &TaskOutcome, service_on_node_us: f64) -> f64 {
    match cfg.kind {
        RewardKind::Barrier => barrier(cfg, outcome_slack_us(outcome, service_on_node_us)),
        RewardKind::Linear => {
            let latency_us = outcome.latency_ns as f64 / 1e3;
            // A drop has no completion latency: charge the latency it would at least have had.
            let latency_us = if outcome.kind() == OutcomeKind::Dropped {
                latency_us + service_on_node_us.max(DEFAULT_MIN_DROP_LATENESS_US)
            } else {
                latency_us
            };
            linear(cfg, latency_us)
        }
        RewardKind::Step => step(cfg, on_time(outcome)),
    }
}

/// Original Malcolm's reward (design 6.3.1): `-sum_i (x_i - mean)^2 - C(a)` over node loads
/// `x`, with `migration_cost` the C(a) of the action taken (0 when the task stays home).
pub fn malcolm_variance(loads: &[f64], migration_cost: f64) -> f64 {
    if loads.is_empty() {
        return -migration_cost;
    }
    let mean = loads.iter().sum::<f64>() / loads.len() as f64;
    -loads.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() - migration_cost
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * (1.0 + b.abs())
    }

    fn outcome(kind: OutcomeKind, finish_us: u64, deadline_us: u64) -> TaskOutcome {
        TaskOutcome {
            kind: kind as i32,
            arrival_ns: 0,
            finish_ns: finish_us * 1000,
            deadline_ns: deadline_us * 1000,
            latency_ns: finish_us * 1000,
            ..Default::default()
        }
    }

    #[test]
    fn barrier_hand_values() {
        let c = RewardConfig::default();
        // S = 0: exactly the goodput reward.
        assert!(close(barrier(&c, 0.0), 1.0));
        // S = 10: 1 + 0.1 ln(2) = 1.0693147...
        assert!(close(barrier(&c, 10.0), 1.069_314_718_055_994_5));
        // S = 90: 1 + 0.1 ln(10) = 1.2302585...
        assert!(close(barrier(&c, 90.0), 1.230_258_509_299_404_6));
        // S = -2: -10 e^1 = -27.18281828...
        assert!(close(barrier(&c, -2.0), -27.182_818_284_590_45));
        // S = -8: -10 e^4 = -545.98150...
        assert!(close(barrier(&c, -8.0), -545.981_500_331_442_4));
        // S = -10: -10 e^5 = -1484.13 -> clipped at -1000; far lateness stays clipped.
        assert_eq!(barrier(&c, -10.0), -1000.0);
        assert_eq!(barrier(&c, -1e9), -1000.0);
        // The jump at the deadline: on time is worth more than just late.
        assert!(barrier(&c, 0.0) > barrier(&c, -1e-9));
    }

    #[test]
    fn barrier_parameters_are_honoured() {
        let c = RewardConfig {
            r_goodput: 2.0,
            lambda: 1.0,
            eta: 1.0,
            beta: 1.0,
            gamma: 1.0,
            r_min: -5.0,
            ..Default::default()
        };
        assert!(close(barrier(&c, 1.0), 2.0 + 2f64.ln()));
        assert!(close(barrier(&c, -1.0), -std::f64::consts::E));
        assert_eq!(barrier(&c, -2.0), -5.0); // -e^2 = -7.39 clipped
    }

    #[test]
    fn ablation_rewards() {
        let c = RewardConfig::default();
        assert!(close(linear(&c, 250.0), -2.5));
        assert_eq!(step(&c, true), 1.0);
        assert_eq!(step(&c, false), -100.0);
    }

    #[test]
    fn outcomes_map_to_slack() {
        let done = outcome(OutcomeKind::Completed, 30, 50);
        assert!(close(outcome_slack_us(&done, 7.0), 20.0));
        let late = outcome(OutcomeKind::Missed, 53, 50);
        assert!(close(outcome_slack_us(&late, 7.0), -3.0));
        // Early drop at 40 us of a task needing 15 us more, deadline 50: S = 50 - 55 = -5.
        let drop = outcome(OutcomeKind::Dropped, 40, 50);
        assert!(close(outcome_slack_us(&drop, 15.0), -5.0));
        // Unknown service: still a miss by the minimum lateness.
        assert!(close(outcome_slack_us(&drop, 0.0), -1.0));
        let c = RewardConfig::default();
        assert!(close(task_reward(&c, &drop, 15.0), -10.0 * 2.5f64.exp()));
        let step_cfg = RewardConfig {
            kind: RewardKind::Step,
            ..Default::default()
        };
        assert_eq!(task_reward(&step_cfg, &drop, 15.0), -100.0);
        assert_eq!(task_reward(&step_cfg, &done, 0.0), 1.0);
        let lin = RewardConfig {
            kind: RewardKind::Linear,
            ..Default::default()
        };
        assert!(close(task_reward(&lin, &done, 0.0), -0.3));
        assert!(close(task_reward(&lin, &drop, 15.0), -0.55));
    }

    #[test]
    fn malcolm_variance_hand_values() {
        // loads 1, 2, 3, 6: mean 3, squares 4 + 1 + 0 + 9 = 14.
        assert!(close(malcolm_variance(&[1.0, 2.0, 3.0, 6.0], 0.1), -14.1));
        assert!(close(malcolm_variance(&[5.0; 8], 0.0), 0.0));
        assert!(close(malcolm_variance(&[], 0.1), -0.1));
    }
}
