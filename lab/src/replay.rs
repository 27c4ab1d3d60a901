//! `replay`: feed a recorded trace through the agent's session code with a chosen policy and
//! compare its decisions with the recording (agreement, decision latency), and collect the
//! recorded workload for a counterfactual run in the embedded simulator.

use hdrhistogram::Histogram;
use malcolm_proto::bridge::{envelope::Body, Direction, Hello, OutcomeKind, PendingTask};
use malcolm_serve::session::{Session, SessionConfig};
use malcolm_serve::shared::Shared;
use malcolm_serve::trace::{TraceError, TraceReader};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What the replay found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReplayReport {
    pub records: u64,
    pub sessions: u64,
    pub steps: u64,
    /// Steps whose recorded reply was a Placement and whose replayed reply was too.
    pub compared_steps: u64,
    pub decisions: u64,
    pub agreeing_decisions: u64,
    /// agreeing / decisions (1.0 when every task went to the same node).
    pub agreement: f64,
    pub decide_p50_us: f64,
    pub decide_p99_us: f64,
    pub decide_max_us: f64,
    /// Recorded outcomes: on-time completions and misses (incl. drops).
    pub recorded_outcomes: u64,
    pub recorded_misses: u64,
    /// Set when the trace ended in a truncated or corrupt record: the error, with its offset.
    /// Everything before it was replayed.
    pub stopped_early: Option<String>,
    /// Damaged records skipped (checksum mismatch, garbage between frames, a recorded
    /// message that is not an envelope), with where they were.
    pub damaged: Vec<String>,
}

/// The recorded workload of one session, for a counterfactual run.
#[derive(Debug, Clone)]
pub struct RecordedWorkload {
    pub hello: Hello,
    pub tasks: Vec<PendingTask>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("trace has no readable records{0}")]
    Empty(String),
}

struct Replayed {
    session: Session,
    /// Replayed replies waiting for the recorded reply with the same request id.
    replies: HashMap<u64, Vec<u32>>,
    workload: Option<RecordedWorkload>,
}

/// Replays `path` with the active policy of `shared`. Returns the report and the recorded
/// workloads (one per session that sent a Hello), in session order.
pub fn replay(
    path: &Path,
    shared: Arc<Shared>,
) -> Result<(ReplayReport, Vec<RecordedWorkload>), ReplayError> {
    let reader = TraceReader::open(path)?;
    let mut report = ReplayReport::default();
    let mut sessions: HashMap<u64, Replayed> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    let mut lat = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
    for rec in reader {
        let rec = match rec {
            Ok(r) => r,
            Err(e) if e.is_skipped() => {
                tracing::warn!(error = %e, "damaged trace record skipped");
                report.damaged.push(e.to_string());
                continue;
            }
            Err(e) => {
                tracing::warn!(error = %e, "trace ends early; replaying the valid prefix");
                report.stopped_early = Some(e.to_string());
                break;
            }
        };
        let direction = rec.direction();
        let env = match malcolm_proto::decode_envelope(&rec.envelope, usize::MAX) {
            Ok(env) => env,
            Err(e) => {
                // A message the env sent that the server refused as undecodable (it was
                // recorded as it arrived), or a damaged one.
                report.damaged.push(format!(
                    "record {} (session {}): the recorded message is not an envelope: {e}",
                    report.records, rec.session_id
                ));
                report.records += 1;
                continue;
            }
        };
        report.records += 1;
        let s = sessions.entry(rec.session_id).or_insert_with(|| {
            order.push(rec.session_id);
            Replayed {
                session: Session::new(
                    rec.session_id,
                    shared.clone(),
                    SessionConfig {
                        announce: false,
                        unique_env_ids: false,
                        ..SessionConfig::default()
                    },
                ),
                replies: HashMap::new(),
                workload: None,
            }
        });
        match direction {
            Direction::EnvToAgent => {
                let request_id = env.request_id;
                match &env.body {
                    Some(Body::Hello(h)) => {
                        s.workload = Some(RecordedWorkload {
                            hello: h.clone(),
                            tasks: Vec::new(),
                        })
                    }
                    Some(Body::Step(step)) => {
                        report.steps += 1;
                        if let Some(w) = &mut s.workload {
                            w.tasks.extend(step.tasks.iter().cloned());
                        }
                        count_outcomes(&mut report, &step.outcomes);
                    }
                    Some(Body::EpisodeEnd(end)) => count_outcomes(&mut report, &end.outcomes),
                    _ => {}
                }
                let is_step = matches!(env.body, Some(Body::Step(_)));
                let t0 = Instant::now();
                let mut env = env;
                let (reply, _) = s.session.handle(&mut env);
                if is_step {
                    lat.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                }
                if let Some(Body::Placement(p)) = reply.body {
                    s.replies.insert(request_id, p.targets);
                }
            }
            Direction::AgentToEnv => {
                if let Some(Body::Placement(recorded)) = &env.body {
                    if let Some(ours) = s.replies.remove(&env.request_id) {
                        report.compared_steps += 1;
                        report.decisions += recorded.targets.len() as u64;
                        report.agreeing_decisions += recorded
                            .targets
                            .iter()
                            .zip(&ours)
                            .filter(|(a, b)| a == b)
                            .count() as u64;
                    } else {
                        // We refused what the recording placed: every decision disagrees.
                        report.decisions += recorded.targets.len() as u64;
                    }
                }
            }
            Direction::Unspecified => {}
        }
    }
    if report.records == 0 {
        let why = match (report.damaged.first(), &report.stopped_early) {
            (Some(d), _) => format!(
                " ({} damaged record(s) skipped; the first: {d})",
                report.damaged.len()
            ),
            (None, Some(e)) => format!(" ({e})"),
            (None, None) => String::new(),
        };
        return Err(ReplayError::Empty(why));
    }
    report.sessions = sessions.len() as u64;
    report.agreement = if report.decisions > 0 {
        report.agreeing_decisions as f64 / report.decisions as f64
    } else {
        0.0
    };
    report.decide_p50_us = lat.value_at_quantile(0.5) as f64 / 1e3;
    report.decide_p99_us = lat.value_at_quantile(0.99) as f64 / 1e3;
    report.decide_max_us = lat.max() as f64 / 1e3;
    let workloads = order
        .into_iter()
        .filter_map(|id| sessions.remove(&id).and_then(|s| s.workload))
        .collect();
    Ok((report, workloads))
}

fn count_outcomes(report: &mut ReplayReport, outcomes: &[malcolm_proto::bridge::TaskOutcome]) {
    report.recorded_outcomes += outcomes.len() as u64;
    report.recorded_misses += outcomes
        .iter()
        .filter(|o| o.kind != OutcomeKind::Completed as i32)
        .count() as u64;
}

impl ReplayReport {
    /// Miss rate of the outcomes the recording carried.
    pub fn recorded_miss_rate(&self) -> f64 {
        if self.recorded_outcomes == 0 {
            0.0
        } else {
            self.recorded_misses as f64 / self.recorded_outcomes as f64
        }
    }
}

/// Re-runs a recorded workload (the tasks the env sent, with their arrivals, origins,
/// services and deadlines, on the same rack) in the embedded simulator under `factory`.
pub fn counterfactual(
    w: &RecordedWorkload,
    factory: std::sync::Arc<dyn malcolm_policies::PolicyFactory>,
) -> Result<rack_sim::Report, CounterfactualError> {
    use malcolm_proto::bridge::Discipline as PbDiscipline;
    use rack_sim::{Discipline, NodeSpec, Scenario, TraceSource, TraceTask};
    let nodes: Vec<NodeSpec> = w
        .hello
        .nodes
        .iter()
        .map(|n| NodeSpec {
            kind: n.kind.clone(),
            cores: n.cores,
            speed: n.speed,
            discipline: match PbDiscipline::try_from(n.discipline) {
                Ok(PbDiscipline::Fcfs) => Discipline::fcfs(),
                Ok(PbDiscipline::ProcessorSharing) => Discipline::processor_sharing(),
                _ => Discipline::edf(),
            },
        })
        .collect();
    let mut tasks: Vec<TraceTask> = w
        .tasks
        .iter()
        .map(|t| TraceTask {
            arrival_ns: t.arrival_ns,
            origin: t.origin,
            // The recording holds only what the env sent: the estimate. It replays as both
            // the true service and the estimate.
            service_ns: t.service_estimate_ns,
            deadline_ns: t.deadline_ns,
            size_bytes: t.size_bytes,
            class: t.class,
            estimate_ns: Some(t.service_estimate_ns),
        })
        .collect();
    if tasks.is_empty() {
        return Err(CounterfactualError::NoTasks(w.hello.env_id.clone()));
    }
    tasks.sort_by_key(|t| t.arrival_ns);
    let mut scenario = Scenario::trace(
        &format!("replay-{}", w.hello.scenario),
        nodes,
        TraceSource::Inline(tasks),
    );
    if w.hello.heartbeat_interval_ns > 0 {
        scenario.heartbeat_interval_ns = w.hello.heartbeat_interval_ns;
    }
    let mut sim = rack_sim::RackSim::new(scenario, w.hello.seed)?;
    Ok(malcolm_serve::loopback::run_factory(
        &mut sim,
        factory,
        w.hello.seed,
        &format!("counterfactual-{}", w.hello.env_id),
    )?)
}

#[derive(Debug, thiserror::Error)]
pub enum CounterfactualError {
    #[error("session {0} recorded no tasks")]
    NoTasks(String),
    #[error(transparent)]
    Sim(#[from] rack_sim::SimError),
    #[error(transparent)]
    Run(#[from] rack_sim::EnvLoopError),
}
