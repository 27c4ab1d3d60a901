//! `train`: the agent server plus embedded-simulator envs over real ZeroMQ sockets; every
//! env's transitions feed the one learner. Produces the learning curve, and, with
//! [`ValidationOptions`], validates the acting weights greedily every few minutes on
//! validation seeds (never the held-out test seeds) and keeps the best checkpoint.

use indicatif::{ProgressBar, ProgressStyle};
use malcolm_policies::PolicyFactory;
use malcolm_serve::bridge::{Bridge, BridgeConfig, Shutdown};
use malcolm_serve::loopback::run_factory;
use malcolm_serve::session::SessionConfig;
use malcolm_serve::shared::{Counters, Shared};
use rack_sim::{run_env_loop, RackSim, ZmqEnvClient};
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an env waits for the agent before giving up on it: far above any decision time
/// and any wait for the learner's replay ratio, so only a dead or wedged agent trips it.
pub const DEFAULT_ENV_TIMEOUT: Duration = Duration::from_secs(90);
/// First validation seed: apart from the training seeds (`seed + 1_000_003 * env + k`) and
/// from the held-out evaluation seeds (`job::EVAL_SEED_BASE`).
pub const VALIDATION_SEED_BASE: u64 = 700_000_001;
/// Validation runs this often during training (and once at the end).
pub const DEFAULT_VALIDATE_EVERY: Duration = Duration::from_secs(60);
/// A progress line this often when stderr is not a terminal (the bar then draws nothing).
const NON_TTY_PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Validation seeds per validation (greedy episodes of the validation scenario).
pub const DEFAULT_VALIDATION_SEEDS: usize = 3;

/// Greedy validation while training.
#[derive(Debug, Clone)]
pub struct ValidationOptions {
    /// Embedded scenario spec of the validation episodes (the training scenario, usually with
    /// a `tasks=` long enough for a stable miss rate).
    pub scenario: String,
    pub seeds: Vec<u64>,
    pub every: Duration,
    /// Where the best validated weights are saved (the learner's full checkpoint with them as
    /// its acting weights).
    pub best_checkpoint: PathBuf,
    /// A baseline run once on the same validation seeds, as the level to beat (e.g.
    /// `slack-greedy`).
    pub baseline: Option<String>,
}

/// The strongest baseline today, run on the validation seeds beside the learner.
pub const DEFAULT_VALIDATION_BASELINE: &str = "slack-greedy";

/// One validation: the acting weights of `policy_version`, greedy, on the validation seeds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ValidationPoint {
    pub wall_s: f64,
    pub decisions: u64,
    pub learner_updates: u64,
    pub policy_version: u64,
    /// Mean over the validation seeds.
    pub miss_rate: f64,
    pub goodput_per_s: f64,
    /// Best so far: saved as the best checkpoint.
    pub best: bool,
}

/// What [`train`] returns: the training curve (one point per episode) and the validations.
#[derive(Debug, Clone, Default)]
pub struct TrainOutcome {
    pub curve: Vec<CurvePoint>,
    pub validation: Vec<ValidationPoint>,
    /// The best validation, if any was saved.
    pub best: Option<ValidationPoint>,
    /// (baseline spec, its miss rate and goodput on the validation seeds).
    pub baseline: Option<(String, f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Embedded scenario spec (`hetero`, `hetero:rho=0.8`, ...).
    pub scenario: String,
    /// Concurrent env threads.
    pub envs: usize,
    /// Wall-clock training budget.
    pub budget: Duration,
    /// Stop after this many episodes in total (whichever comes first).
    pub max_episodes: Option<u64>,
    /// Training seeds are `seed + 1_000_003 * env + episode`; keep eval seeds elsewhere.
    pub seed: u64,
    /// ZeroMQ endpoint for the envs (default: a fresh ipc:// path in the temp dir).
    pub endpoint: Option<String>,
    pub show_progress: bool,
    pub validation: Option<ValidationOptions>,
}

/// One point of the learning curve: a finished training episode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CurvePoint {
    pub episode: u64,
    pub env: usize,
    pub seed: u64,
    pub wall_s: f64,
    /// Decisions served by the agent so far (all envs).
    pub decisions: u64,
    pub learner_updates: u64,
    /// Updates per second since the previous episode ended.
    pub updates_per_s: f64,
    pub loss: f64,
    pub policy_version: u64,
    /// The learner's achieved replay ratio (samples per inserted transition) and its target.
    pub samples_per_insert: f64,
    pub target_samples_per_insert: f64,
    pub transitions_inserted: u64,
    pub transitions_dropped: u64,
    pub miss_rate: f64,
    pub goodput_per_s: f64,
    pub p99_us: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Bridge(#[from] malcolm_serve::bridge::BridgeError),
    #[error("scenario: {0}")]
    Scenario(#[from] rack_sim::SimError),
    #[error("env {env}: {source}")]
    Env {
        env: usize,
        source: rack_sim::EnvLoopError,
    },
    #[error("env {env}: {source}")]
    Connect {
        env: usize,
        source: rack_sim::TransportError,
    },
    #[error("a training thread panicked")]
    Panicked,
    #[error("validation: {0}")]
    Validation(String),
}

enum EnvMsg {
    Done(CurvePoint),
    Failed(TrainError),
}

/// Greedy episodes of `factory` (a frozen copy) on the validation seeds: mean miss rate and
/// goodput.
pub fn validate(
    factory: &Arc<dyn PolicyFactory>,
    scenario: &rack_sim::Scenario,
    seeds: &[u64],
) -> Result<(f64, f64), TrainError> {
    let (mut miss, mut goodput) = (0.0, 0.0);
    for &seed in seeds {
        let mut sim = RackSim::new(scenario.clone(), seed)?;
        let r = run_factory(&mut sim, factory.clone(), seed, "validation")
            .map_err(|e| TrainError::Validation(e.to_string()))?;
        miss += r.miss_rate;
        goodput += r.goodput_per_s;
    }
    let k = seeds.len().max(1) as f64;
    Ok((miss / k, goodput / k))
}

/// Validation bookkeeping shared by the validation thread and the end of training.
struct Validator {
    opts: ValidationOptions,
    scenario: rack_sim::Scenario,
    points: Mutex<Vec<ValidationPoint>>,
    baseline: Option<(String, f64, f64)>,
}

impl Validator {
    /// Validates the learner's current acting weights; saves them when best so far.
    fn run_once(&self, shared: &Shared, started: Instant) -> Result<(), TrainError> {
        let (_, factory) = shared.active();
        let Some(copy) = factory.frozen_copy() else {
            return Ok(());
        };
        let version = copy.status().policy_version;
        let l = factory.status();
        let decisions = Counters::get(&shared.counters.decisions);
        let (miss_rate, goodput_per_s) = validate(&copy, &self.scenario, &self.opts.seeds)?;
        let mut points = self.points.lock().expect("validation lock");
        let best = points
            .iter()
            .filter(|p| p.best)
            .all(|p| miss_rate < p.miss_rate);
        if best {
            copy.save_checkpoint(&self.opts.best_checkpoint)
                .map_err(|e| TrainError::Validation(format!("saving the best checkpoint: {e}")))?;
        }
        tracing::debug!(version, miss_rate, best, "validation");
        points.push(ValidationPoint {
            wall_s: started.elapsed().as_secs_f64(),
            decisions,
            learner_updates: l.updates,
            policy_version: version,
            miss_rate,
            goodput_per_s,
            best,
        });
        Ok(())
    }

    fn best(&self) -> Option<ValidationPoint> {
        let points = self.points.lock().expect("validation lock");
        points.iter().rev().find(|p| p.best).cloned()
    }
}

/// Progress of a training loop over a wall-clock budget: a bar on a terminal; without one
/// (logs, CI) the bar draws nothing, so the latest line is logged every
/// [`NON_TTY_PROGRESS_EVERY`] instead. Hidden when `show` is false.
pub(crate) struct BudgetProgress {
    pb: ProgressBar,
    budget: Duration,
    log_lines: bool,
    last_line: Instant,
}

impl BudgetProgress {
    pub(crate) fn new(show: bool, budget: Duration, what: &str) -> Self {
        let pb = if show {
            let pb = ProgressBar::new(budget.as_secs().max(1));
            pb.set_style(
                ProgressStyle::with_template(&format!(
                    "{{spinner}} {what} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}}s {{msg}}"
                ))
                .expect("valid template"),
            );
            pb
        } else {
            ProgressBar::hidden()
        };
        Self {
            pb,
            budget,
            log_lines: show && !std::io::IsTerminal::is_terminal(&std::io::stderr()),
            last_line: Instant::now(),
        }
    }

    pub(crate) fn set_elapsed(&self, elapsed: Duration) {
        self.pb
            .set_position(elapsed.as_secs().min(self.budget.as_secs()));
    }

    pub(crate) fn set_message(&self, message: &'static str) {
        self.pb.set_message(message);
    }

    /// Shows `line` (an episode's or run's summary), and logs it when it is time.
    pub(crate) fn report(&mut self, elapsed: Duration, line: String) {
        if self.log_lines && self.last_line.elapsed() >= NON_TTY_PROGRESS_EVERY {
            self.last_line = Instant::now();
            tracing::info!(
                elapsed_s = elapsed.as_secs(),
                budget_s = self.budget.as_secs(),
                "{line}"
            );
        }
        self.pb.set_message(line);
    }

    pub(crate) fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

/// Trains the active policy of `shared` (put it in train mode first) until the budget is
/// spent, `stop` is triggered or `max_episodes` finished. Returns the learning curve and the
/// validations.
pub fn train(
    shared: Arc<Shared>,
    opts: &TrainOptions,
    stop: &Shutdown,
) -> Result<TrainOutcome, TrainError> {
    let scenario = rack_sim::by_name(&opts.scenario)?;
    let ctx = zmq::Context::new();
    let ipc = std::env::temp_dir().join(format!(
        "malcolm-train-{}-{}.sock",
        std::process::id(),
        opts.seed
    ));
    let endpoint = opts
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("ipc://{}", ipc.display()));
    let bridge = Bridge::bind(
        &ctx,
        BridgeConfig {
            endpoints: vec![endpoint],
            // Learner sessions decide in ~100 us: spread envs over threads.
            workers: opts.envs.max(1),
            // A session per training episode: connects are logged at DEBUG, not INFO.
            session: SessionConfig {
                announce: false,
                ..SessionConfig::default()
            },
            ..BridgeConfig::default()
        },
    )?;
    let endpoint = bridge.endpoints()[0].clone();
    let bridge_stop = Shutdown::new();
    let bridge_thread = {
        let (shared, s) = (shared.clone(), bridge_stop.clone());
        std::thread::spawn(move || bridge.run(shared, None, s))
    };
    let envs_stop = Shutdown::new();
    let started = Instant::now();
    let validator = match &opts.validation {
        Some(v) => {
            let scenario = rack_sim::by_name(&v.scenario)?;
            let baseline = match &v.baseline {
                Some(spec) => {
                    let f = malcolm_serve::registry::make_factory(spec, &Default::default())
                        .map_err(|e| TrainError::Validation(format!("baseline {spec}: {e}")))?;
                    let (miss, goodput) = validate(&f, &scenario, &v.seeds)?;
                    Some((spec.clone(), miss, goodput))
                }
                None => None,
            };
            Some(Arc::new(Validator {
                scenario,
                opts: v.clone(),
                points: Mutex::new(Vec::new()),
                baseline,
            }))
        }
        None => None,
    };
    let validation_thread = validator.as_ref().map(|v| {
        let (v, shared, s) = (v.clone(), shared.clone(), envs_stop.clone());
        std::thread::spawn(move || -> Result<(), TrainError> {
            let mut next = Instant::now() + v.opts.every;
            while !s.is_triggered() {
                if Instant::now() >= next {
                    v.run_once(&shared, started)?;
                    next = Instant::now() + v.opts.every;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        })
    });
    let (tx, rx) = mpsc::channel::<EnvMsg>();
    let mut env_threads = Vec::new();
    let episode_counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for env in 0..opts.envs.max(1) {
        let (tx, scenario, endpoint, envs_stop, shared, counter) = (
            tx.clone(),
            scenario.clone(),
            endpoint.clone(),
            envs_stop.clone(),
            shared.clone(),
            episode_counter.clone(),
        );
        let base = opts.seed;
        env_threads.push(std::thread::spawn(move || {
            let mut local = 0u64;
            while !envs_stop.is_triggered() {
                let seed = base + 1_000_003 * env as u64 + local;
                local += 1;
                let run = || -> Result<rack_sim::Report, TrainError> {
                    let mut sim = RackSim::new(scenario.clone(), seed)?;
                    let mut client = ZmqEnvClient::connect(&endpoint, DEFAULT_ENV_TIMEOUT)
                        .map_err(|source| TrainError::Connect { env, source })?;
                    run_env_loop(&mut sim, &mut client, &format!("train-{env}"), 1)
                        .map_err(|source| TrainError::Env { env, source })
                };
                let msg = match run() {
                    Ok(r) => {
                        let l = shared.learner_status();
                        EnvMsg::Done(CurvePoint {
                            episode: counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                            env,
                            seed,
                            wall_s: started.elapsed().as_secs_f64(),
                            decisions: Counters::get(&shared.counters.decisions),
                            learner_updates: l.updates,
                            updates_per_s: 0.0,
                            loss: l.loss,
                            policy_version: l.policy_version,
                            samples_per_insert: l.samples_per_insert,
                            target_samples_per_insert: l.target_samples_per_insert,
                            transitions_inserted: l.transitions_inserted,
                            transitions_dropped: l.transitions_dropped,
                            miss_rate: r.miss_rate,
                            goodput_per_s: r.goodput_per_s,
                            p99_us: r.latency.p99_ns / 1e3,
                        })
                    }
                    Err(e) => EnvMsg::Failed(e),
                };
                let failed = matches!(msg, EnvMsg::Failed(_));
                if tx.send(msg).is_err() || failed {
                    break;
                }
            }
        }));
    }
    drop(tx);
    let mut pb = BudgetProgress::new(opts.show_progress, opts.budget, "training");
    let mut curve: Vec<CurvePoint> = Vec::new();
    let mut failure = None;
    let tick = Duration::from_millis(250);
    let mut last_rate = (Instant::now(), 0u64);
    loop {
        let elapsed = started.elapsed();
        pb.set_elapsed(elapsed);
        let done = elapsed >= opts.budget
            || stop.is_triggered()
            || opts.max_episodes.is_some_and(|m| curve.len() as u64 >= m);
        if done && !envs_stop.is_triggered() {
            envs_stop.trigger();
            pb.set_message("finishing the running episodes");
        }
        match rx.recv_timeout(tick) {
            Ok(EnvMsg::Done(mut p)) => {
                let l = shared.learner_status();
                let dt = last_rate.0.elapsed().as_secs_f64();
                p.updates_per_s = if dt > 0.0 {
                    p.learner_updates.saturating_sub(last_rate.1) as f64 / dt
                } else {
                    0.0
                };
                last_rate = (Instant::now(), p.learner_updates);
                let best = validator.as_ref().and_then(|v| {
                    let b = v.best()?;
                    let reference = v.baseline.as_ref().map_or(String::new(), |(n, m, _)| {
                        format!(" ({n} {:.2}%)", m * 100.0)
                    });
                    Some(format!(
                        " | val best {:.2}%{reference}",
                        b.miss_rate * 100.0
                    ))
                });
                let line = format!(
                    "ep {} miss {:.2}% | {} upd ({:.0}/s) ratio {:.1}/{:.0} dropped {}{}",
                    p.episode,
                    p.miss_rate * 100.0,
                    l.updates,
                    p.updates_per_s,
                    l.samples_per_insert,
                    l.target_samples_per_insert,
                    l.transitions_dropped,
                    best.unwrap_or_default(),
                );
                pb.report(started.elapsed(), line);
                tracing::debug!(episode = p.episode, miss_rate = p.miss_rate, "episode done");
                curve.push(p);
            }
            Ok(EnvMsg::Failed(e)) => {
                tracing::error!(error = %e, "training env failed");
                failure.get_or_insert(e);
                envs_stop.trigger();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    for t in env_threads {
        t.join().map_err(|_| TrainError::Panicked)?;
    }
    if let Some(t) = validation_thread {
        envs_stop.trigger();
        if let Err(e) = t.join().map_err(|_| TrainError::Panicked)? {
            failure.get_or_insert(e);
        }
    }
    // The final weights are validated too (unless training failed or was interrupted).
    if let (Some(v), None) = (&validator, &failure) {
        if !stop.is_triggered() {
            pb.set_message("validating the final weights");
            if let Err(e) = v.run_once(&shared, started) {
                failure.get_or_insert(e);
            }
        }
    }
    pb.finish();
    bridge_stop.trigger();
    bridge_thread.join().map_err(|_| TrainError::Panicked)??;
    let _ = std::fs::remove_file(&ipc);
    curve.sort_by_key(|p| p.episode);
    if let Some(e) = failure {
        return Err(e);
    }
    let (validation, best, baseline) = match &validator {
        Some(v) => {
            let best = v.best();
            let points = v.points.lock().expect("validation lock").clone();
            (points, best, v.baseline.clone())
        }
        None => (Vec::new(), None, None),
    };
    Ok(TrainOutcome {
        curve,
        validation,
        best,
        baseline,
    })
}
