//! Training Malcolm-Strict on OMNeT++ runs: N env slots each run one Cmdenv run after
//! another (fresh repetitions, cycling through the variants) against the one learner, with a
//! progress bar; a validation thread validates frozen copies of the acting weights greedily
//! on validation repetitions (never the held-out test ones) and keeps the best checkpoint.

use super::runner::{run_served, Omnetpp, RunError, RunSpec};
use crate::train::{BudgetProgress, ValidationPoint};
use malcolm_policies::{Mode, PolicyError, PolicyFactory};
use malcolm_serve::bridge::Shutdown;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// First validation repetition (seed set): above every training repetition.
pub const VALIDATION_REP_BASE: u64 = 200;
/// First held-out test repetition: the runs 100.. of the earlier OMNeT++ evaluations
/// (docs/results.md), apart from training (0..100) and validation (200..).
pub const EVAL_REP_BASE: u64 = 100;
/// Training repetitions cycle below this (they never reach the test runs).
pub const TRAIN_REPS: u64 = EVAL_REP_BASE;

/// What the training part needs.
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub config: String,
    /// Run filters, one per variant (`true` when the config has no iteration variables).
    pub variants: Vec<String>,
    pub envs: usize,
    pub budget: Duration,
    pub max_runs: Option<u64>,
    /// `--sim-time-limit` of the training runs.
    pub sim_time: String,
    pub run_timeout: Duration,
    /// Validation repetitions (empty: no validation) and how often.
    pub validation_reps: Vec<u64>,
    pub validate_every: Duration,
    /// `--sim-time-limit` of the validation runs.
    pub validation_sim_time: String,
    pub out: PathBuf,
    pub show_progress: bool,
}

/// One finished training run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrainRun {
    pub run: u64,
    pub env: usize,
    pub variant: String,
    pub repetition: u64,
    pub wall_s: f64,
    pub decisions: u64,
    pub learner_updates: u64,
    pub samples_per_insert: f64,
    pub tasks: u64,
    pub miss_rate: f64,
    pub events_per_s: f64,
}

/// What training returns.
#[derive(Debug, Clone, Default)]
pub struct Trained {
    pub runs: Vec<TrainRun>,
    pub validation: Vec<ValidationPoint>,
    pub best: Option<ValidationPoint>,
    pub best_checkpoint: Option<PathBuf>,
    pub interrupted: bool,
    pub wall_s: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("training run: {0}")]
    Run(#[from] RunError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("a training thread panicked")]
    Panicked,
}

/// Greedy runs of `factory` on the validation repetitions of every variant: mean miss rate.
pub fn validate(
    opp: &Omnetpp,
    factory: &Arc<dyn PolicyFactory>,
    plan: &TrainPlan,
    stop: &Shutdown,
) -> Result<f64, RunError> {
    let mut miss = Vec::new();
    for (v, filter) in plan.variants.iter().enumerate() {
        for &rep in &plan.validation_reps {
            let spec = RunSpec {
                config: plan.config.clone(),
                filter: filter.clone(),
                repetition: rep,
                sim_time: plan.validation_sim_time.clone(),
                result_dir: plan.out.join(format!("runs/validation/v{v}-r{rep}")),
                env_id: format!("validation-v{v}-r{rep}"),
                extra: vec![],
            };
            let r = run_served(opp, factory.clone(), &spec, plan.run_timeout, stop)?;
            miss.push(r.outcome.miss_rate());
        }
    }
    Ok(miss.iter().sum::<f64>() / miss.len().max(1) as f64)
}

struct Validator {
    points: Mutex<Vec<ValidationPoint>>,
    best_path: PathBuf,
}

impl Validator {
    /// Validates the learner's current acting weights; saves them when best so far.
    fn run_once(
        &self,
        opp: &Omnetpp,
        learner: &Arc<dyn PolicyFactory>,
        plan: &TrainPlan,
        started: Instant,
        stop: &Shutdown,
    ) -> Result<(), TrainError> {
        let Some(copy) = learner.frozen_copy() else {
            return Ok(());
        };
        let version = copy.status().policy_version;
        let l = learner.status();
        let miss_rate = validate(opp, &copy, plan, stop)?;
        let mut points = self.points.lock().expect("validation lock");
        let best = points
            .iter()
            .filter(|p| p.best)
            .all(|p| miss_rate < p.miss_rate);
        if best {
            copy.save_checkpoint(&self.best_path)?;
        }
        tracing::info!(version, miss_rate, best, "validation");
        points.push(ValidationPoint {
            wall_s: started.elapsed().as_secs_f64(),
            decisions: l.transitions_inserted,
            learner_updates: l.updates,
            policy_version: version,
            miss_rate,
            goodput_per_s: 0.0,
            best,
        });
        Ok(())
    }
}

enum Msg {
    Done(Box<TrainRun>),
    Failed(TrainError),
}

/// Trains `learner` (put in train mode here) on Cmdenv runs until the budget is spent,
/// `max_runs` finished or `stop` (Ctrl-C) is triggered; the running runs finish after the
/// budget (bounded by the run timeout) and are killed on Ctrl-C.
pub fn train(
    opp: &Omnetpp,
    learner: Arc<dyn PolicyFactory>,
    plan: &TrainPlan,
    stop: &Shutdown,
) -> Result<Trained, TrainError> {
    learner.set_mode(Mode::Train);
    let started = Instant::now();
    let no_new_runs = Shutdown::new();
    let next_run = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel::<Msg>();
    let mut threads = Vec::new();
    for env in 0..plan.envs.max(1) {
        let (tx, opp, learner, plan, no_new, stop, next) = (
            tx.clone(),
            opp.clone(),
            learner.clone(),
            plan.clone(),
            no_new_runs.clone(),
            stop.clone(),
            next_run.clone(),
        );
        threads.push(std::thread::spawn(move || {
            while !no_new.is_triggered() && !stop.is_triggered() {
                let run = next.fetch_add(1, Ordering::Relaxed);
                let v = (run % plan.variants.len() as u64) as usize;
                let repetition = run % TRAIN_REPS;
                let spec = RunSpec {
                    config: plan.config.clone(),
                    filter: plan.variants[v].clone(),
                    repetition,
                    sim_time: plan.sim_time.clone(),
                    result_dir: plan.out.join(format!("runs/train/env{env}")),
                    env_id: format!("train-{env}"),
                    extra: vec![],
                };
                let msg = match run_served(&opp, learner.clone(), &spec, plan.run_timeout, &stop) {
                    Ok(r) => {
                        let l = learner.status();
                        Msg::Done(Box::new(TrainRun {
                            run,
                            env,
                            variant: plan.variants[v].clone(),
                            repetition,
                            wall_s: started.elapsed().as_secs_f64(),
                            decisions: r.decisions,
                            learner_updates: l.updates,
                            samples_per_insert: l.samples_per_insert,
                            tasks: r.outcome.total(),
                            miss_rate: r.outcome.miss_rate(),
                            events_per_s: r.outcome.events_per_s,
                        }))
                    }
                    Err(e) => Msg::Failed(e.into()),
                };
                let failed = matches!(msg, Msg::Failed(_));
                if tx.send(msg).is_err() || failed {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let validator = (!plan.validation_reps.is_empty()).then(|| {
        Arc::new(Validator {
            points: Mutex::new(Vec::new()),
            best_path: plan.out.join("best.safetensors"),
        })
    });
    let validation_thread = validator.as_ref().map(|v| {
        let (v, opp, learner, plan, no_new, stop) = (
            v.clone(),
            opp.clone(),
            learner.clone(),
            plan.clone(),
            no_new_runs.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || -> Result<(), TrainError> {
            let mut next = Instant::now() + plan.validate_every;
            while !no_new.is_triggered() && !stop.is_triggered() {
                if Instant::now() >= next {
                    v.run_once(&opp, &learner, &plan, started, &stop)?;
                    next = Instant::now() + plan.validate_every;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        })
    });
    let mut pb = BudgetProgress::new(plan.show_progress, plan.budget, "training in OMNeT++");
    let mut runs: Vec<TrainRun> = Vec::new();
    let mut failure = None;
    loop {
        let elapsed = started.elapsed();
        pb.set_elapsed(elapsed);
        let done = elapsed >= plan.budget
            || stop.is_triggered()
            || plan.max_runs.is_some_and(|m| runs.len() as u64 >= m);
        if done && !no_new_runs.is_triggered() {
            no_new_runs.trigger();
            pb.set_message("finishing the running runs");
        }
        match rx.recv_timeout(Duration::from_millis(250)) {
            Ok(Msg::Done(r)) => {
                let l = learner.status();
                let best = validator.as_ref().and_then(|v| {
                    let points = v.points.lock().expect("validation lock");
                    points
                        .iter()
                        .rev()
                        .find(|p| p.best)
                        .map(|b| format!(" | val best {:.2}%", b.miss_rate * 100.0))
                });
                let line = format!(
                    "run {} ({}) miss {:.2}% | {} upd, ratio {:.1}/{:.0}{}",
                    r.run,
                    r.repetition,
                    r.miss_rate * 100.0,
                    l.updates,
                    l.samples_per_insert,
                    l.target_samples_per_insert,
                    best.unwrap_or_default()
                );
                pb.report(elapsed, line);
                runs.push(*r);
            }
            Ok(Msg::Failed(e)) => {
                if matches!(e, TrainError::Run(RunError::Interrupted)) {
                    tracing::info!("training run killed (interrupted)");
                } else {
                    tracing::error!(error = %e, "training run failed");
                    failure.get_or_insert(e);
                }
                no_new_runs.trigger();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for t in threads {
        t.join().map_err(|_| TrainError::Panicked)?;
    }
    if let Some(t) = validation_thread {
        match t.join().map_err(|_| TrainError::Panicked)? {
            Err(TrainError::Run(RunError::Interrupted)) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
            Ok(()) => {}
        }
    }
    if let (Some(v), None, false) = (&validator, &failure, stop.is_triggered()) {
        pb.set_message("validating the final weights");
        match v.run_once(opp, &learner, plan, started, stop) {
            Ok(()) | Err(TrainError::Run(RunError::Interrupted)) => {}
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    pb.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    runs.sort_by_key(|r| r.run);
    let (validation, best) = match &validator {
        Some(v) => {
            let points = v.points.lock().expect("validation lock").clone();
            let best = points.iter().rev().find(|p| p.best).cloned();
            (points, best)
        }
        None => (Vec::new(), None),
    };
    Ok(Trained {
        runs,
        best_checkpoint: best.as_ref().map(|_| plan.out.join("best.safetensors")),
        validation,
        best,
        interrupted: stop.is_triggered(),
        wall_s: started.elapsed().as_secs_f64(),
    })
}
