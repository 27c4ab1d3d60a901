//! `train`: the agent server plus embedded-simulator envs over real ZeroMQ sockets; every
//! env's transitions feed the one learner. Produces the learning curve.

use crate::bridge::{Bridge, BridgeConfig, Shutdown};
use crate::shared::{Counters, Shared};
use indicatif::{ProgressBar, ProgressStyle};
use rack_sim::{run_env_loop, RackSim, ZmqEnvClient};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long an env waits for the agent before giving up on it: far above any decision time,
/// so only a dead or wedged agent trips it.
pub const DEFAULT_ENV_TIMEOUT: Duration = Duration::from_secs(30);

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
    pub loss: f64,
    pub policy_version: u64,
    pub miss_rate: f64,
    pub goodput_per_s: f64,
    pub p99_us: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Bridge(#[from] crate::bridge::BridgeError),
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
}

enum EnvMsg {
    Done(CurvePoint),
    Failed(TrainError),
}

/// Trains the active policy of `shared` (put it in train mode first) until the budget is
/// spent, `stop` is triggered or `max_episodes` finished. Returns the learning curve.
pub fn train(
    shared: Arc<Shared>,
    opts: &TrainOptions,
    stop: &Shutdown,
) -> Result<Vec<CurvePoint>, TrainError> {
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
                            loss: l.loss,
                            policy_version: l.policy_version,
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
    let pb = if opts.show_progress {
        let pb = ProgressBar::new(opts.budget.as_secs().max(1));
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} training [{elapsed_precise}] {bar:30} {pos}/{len}s {msg}",
            )
            .expect("valid template"),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let mut curve = Vec::new();
    let mut failure = None;
    let tick = Duration::from_millis(250);
    loop {
        let elapsed = started.elapsed();
        pb.set_position(elapsed.as_secs().min(opts.budget.as_secs()));
        let done = elapsed >= opts.budget
            || stop.is_triggered()
            || opts.max_episodes.is_some_and(|m| curve.len() as u64 >= m);
        if done && !envs_stop.is_triggered() {
            envs_stop.trigger();
            pb.set_message("finishing the running episodes");
        }
        match rx.recv_timeout(tick) {
            Ok(EnvMsg::Done(p)) => {
                let l = shared.learner_status();
                pb.set_message(format!(
                    "ep {} miss {:.2}% goodput {:.0}/s | updates {} loss {:.4} replay {}/{}",
                    p.episode,
                    p.miss_rate * 100.0,
                    p.goodput_per_s,
                    l.updates,
                    l.loss,
                    l.replay_len,
                    l.replay_capacity
                ));
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
    pb.finish_and_clear();
    for t in env_threads {
        t.join().map_err(|_| TrainError::Panicked)?;
    }
    bridge_stop.trigger();
    bridge_thread.join().map_err(|_| TrainError::Panicked)??;
    let _ = std::fs::remove_file(&ipc);
    curve.sort_by_key(|p| p.episode);
    match failure {
        Some(e) => Err(e),
        None => Ok(curve),
    }
}
