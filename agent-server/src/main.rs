//! `agent-server`: the command-line front end. Everything it does lives in the library.

use agent_server::bench::{bridge_bench, BridgeBenchOptions};
use agent_server::bridge::{BridgeConfig, Shutdown, DEFAULT_SESSION_TIMEOUT};
use agent_server::eval::EvalCase;
use agent_server::job::{self, JobOptions, EVAL_SEED_BASE};
use agent_server::registry;
use agent_server::server::{self, ServeOptions};
use agent_server::shared::Shared;
use agent_server::train::{
    TrainOptions, ValidationOptions, DEFAULT_VALIDATE_EVERY, DEFAULT_VALIDATION_BASELINE,
    DEFAULT_VALIDATION_SEEDS, VALIDATION_SEED_BASE,
};
use agent_server::{config, replay, results};
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use malcolm_agents::AgentsConfig;
use malcolm_policies::Mode;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// ZeroMQ endpoint `serve` binds by default (all interfaces: the compose stack's envs
/// connect from other containers).
const DEFAULT_BIND: &str = "tcp://0.0.0.0:5555";
/// gRPC control-plane address `serve` listens on by default.
const DEFAULT_CONTROL: &str = "0.0.0.0:50051";
/// Training budget of the main job: long enough for the learner to pass the baselines on
/// `hetero` on a 2-core machine, short enough to wait for.
const DEFAULT_TRAIN_MINUTES: f64 = 8.0;
/// Tasks per training episode: short episodes give the learning curve many points and let
/// the learner see many episode starts; evaluation runs the scenario's full length.
const DEFAULT_TRAIN_TASKS: u64 = 20_000;
/// Tasks per episode (training and evaluation) with --quick.
const QUICK_TASKS: u64 = 6_000;
/// Held-out seeds per evaluated policy: enough for a 95% interval.
const DEFAULT_EVAL_SEEDS: usize = 5;

/// Agent server for the Malcolm-Strict co-simulation bridge.
///
/// Environments (OMNeT++ runs, or the embedded rack simulator) connect over ZeroMQ and get a
/// target node for every pending task; an operator steers the server over gRPC. Every flag
/// can also be set by its environment variable (shown in each help line) or by a TOML file
/// given with --config whose keys are the long flag names, top level or under [serve],
/// [train], ... tables. Precedence: flag > environment > file > default.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Config file (TOML) with defaults for the flags.
    #[arg(long, global = true, env = "MALCOLM_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `agent_server=debug`.
    #[arg(long, global = true, env = "MALCOLM_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve external environments (OMNeT++) over ZeroMQ, with the gRPC control plane.
    Serve(ServeArgs),
    /// The main job: train on an embedded scenario, checkpoint, evaluate against the baselines
    /// on held-out seeds, write a results folder (CSV, markdown, PNG plots).
    Train(TrainArgs),
    /// Evaluate policies side by side on an embedded scenario with held-out seeds.
    Eval(EvalArgs),
    /// Replay a recorded trace through the agent: decision agreement, decision latency, and
    /// the recorded workload re-run in the embedded simulator under the chosen policy.
    Replay(ReplayArgs),
    /// Benchmarks that print their figures.
    Bench(BenchArgs),
    /// Run the embedded rack simulator as an environment process against a running server
    /// (what an OMNeT++ run does, without OMNeT++).
    Env(EnvArgs),
    /// Probe a server's gRPC health service; exit 0 when SERVING (container healthchecks).
    Health(HealthArgs),
    /// The design's experiments (hetero, barrier-ablation, heavy-tail, staleness, load,
    /// microburst, cvar, or all): train, evaluate on held-out seeds, write CSV, markdown and
    /// PNG figures with 95% intervals into a results folder.
    #[command(name = "experiment")]
    Experiment(agent_server::experiment::ExperimentArgs),
}

#[derive(Args, Debug)]
struct EnvArgs {
    /// Agent server ZeroMQ endpoint.
    #[arg(long, env = "MALCOLM_AGENT", default_value = "tcp://127.0.0.1:5555")]
    connect: String,
    /// Embedded scenario spec, as for `train`.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "hetero")]
    scenario: String,
    /// Episodes to run (each a fresh seed: seed, seed+stride, seed+2*stride, ...).
    #[arg(long, env = "MALCOLM_EPISODES", default_value_t = 1)]
    episodes: u64,
    #[arg(long, env = "MALCOLM_SEED", default_value_t = 1)]
    seed: u64,
    /// Step between the seeds of successive episodes: N envs started with seeds s, s+1, ...,
    /// s+N-1 and stride N never run the same episode.
    #[arg(long, env = "MALCOLM_SEED_STRIDE", default_value_t = 1)]
    seed_stride: u64,
    /// Env id announced in Hello (default: rack-sim-<pid>).
    #[arg(long, env = "MALCOLM_ENV_ID")]
    env_id: Option<String>,
    /// Seconds to wait for each agent reply before giving up.
    #[arg(long, env = "MALCOLM_ENV_TIMEOUT_S", default_value_t = 30.0)]
    timeout_s: f64,
    /// Append each episode's report as a JSON line to this file.
    #[arg(long, env = "MALCOLM_REPORT")]
    report: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// Control-plane address.
    #[arg(long, env = "MALCOLM_HEALTH_ADDR", default_value = "127.0.0.1:50051")]
    addr: String,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 3.0)]
    timeout_s: f64,
}

#[derive(Args, Debug, Clone)]
struct PolicyArgs {
    /// Policy: malcolm-strict (alias iqn), malcolm, po2, power-of-d[:d=3], jsq, slack-greedy,
    /// tod-n, round-robin, random. Baselines take `name:key=value,...` parameters.
    #[arg(long, env = "MALCOLM_POLICY", default_value = "malcolm-strict")]
    policy: String,
    /// JSON file with the learners' hyper-parameters (defaults: design.md section 7).
    #[arg(long, env = "MALCOLM_AGENTS_CONFIG")]
    agents_config: Option<PathBuf>,
}

impl PolicyArgs {
    fn agents(&self) -> Result<AgentsConfig> {
        match &self.agents_config {
            None => Ok(AgentsConfig::default()),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading agents config {}", p.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing agents config {}", p.display()))
            }
        }
    }

    fn shared(&self) -> Result<Arc<Shared>> {
        let agents = self.agents()?;
        Shared::new(&self.policy, registry::maker(agents))
            .with_context(|| format!("creating policy {}", self.policy))
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum ModeArg {
    Train,
    Eval,
    Frozen,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Train => Mode::Train,
            ModeArg::Eval => Mode::Eval,
            ModeArg::Frozen => Mode::Frozen,
        }
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// ZeroMQ endpoints to bind (comma-separated): tcp://HOST:PORT or ipc:///path.
    #[arg(long, env = "MALCOLM_BIND", default_value = DEFAULT_BIND, value_delimiter = ',')]
    bind: Vec<String>,
    /// gRPC control-plane address (HOST:PORT; port 0 picks a free one).
    #[arg(long, env = "MALCOLM_CONTROL", default_value = DEFAULT_CONTROL)]
    control: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Initial mode: train (explore and learn), eval (greedy), frozen (greedy, never updated).
    #[arg(long, env = "MALCOLM_MODE", value_enum, default_value = "train")]
    mode: ModeArg,
    /// Checkpoint loaded at start when the file exists, and saved on shutdown (Ctrl-C/SIGTERM).
    #[arg(long, env = "MALCOLM_CHECKPOINT")]
    checkpoint: Option<PathBuf>,
    /// Record every envelope to this trace file (`.zst` to compress).
    #[arg(long, env = "MALCOLM_RECORD")]
    record: Option<PathBuf>,
    /// Seconds an env may stay silent before its session is expired.
    #[arg(long, env = "MALCOLM_SESSION_TIMEOUT_S", default_value_t = DEFAULT_SESSION_TIMEOUT.as_secs_f64())]
    session_timeout_s: f64,
    /// Worker threads for sessions (default: number of cores).
    #[arg(long, env = "MALCOLM_WORKERS")]
    workers: Option<usize>,
    /// Scenario label written into the trace header.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "")]
    scenario: String,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// Embedded scenario (hetero, ideal, homogeneous-16/32/64, heavy-tail, microburst,
    /// staleness), optionally with overrides: `hetero:rho=0.8,f=10`.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "hetero")]
    scenario: String,
    #[command(flatten)]
    policy: PolicyArgs,
    /// Training budget in minutes of wall clock.
    #[arg(long, env = "MALCOLM_TRAIN_MINUTES", default_value_t = DEFAULT_TRAIN_MINUTES)]
    minutes: f64,
    /// Stop training after this many episodes (whichever comes first).
    #[arg(long, env = "MALCOLM_EPISODES")]
    episodes: Option<u64>,
    /// Concurrent simulator envs feeding the learner over ZeroMQ.
    #[arg(long, env = "MALCOLM_ENVS", default_value_t = 2)]
    envs: usize,
    /// Base seed of the training episodes.
    #[arg(long, env = "MALCOLM_SEED", default_value_t = 1)]
    seed: u64,
    /// Tasks per training episode (evaluation uses the scenario's own length, 1e6 by default).
    #[arg(long, env = "MALCOLM_TRAIN_TASKS", default_value_t = DEFAULT_TRAIN_TASKS)]
    train_tasks: u64,
    /// Held-out evaluation seeds per policy (0: train and validate only).
    #[arg(long, env = "MALCOLM_EVAL_SEEDS", default_value_t = DEFAULT_EVAL_SEEDS)]
    eval_seeds: usize,
    /// Results folder (default: results/<scenario>-<unix time>).
    #[arg(long, env = "MALCOLM_RESULTS")]
    out: Option<PathBuf>,
    /// Resume from this checkpoint.
    #[arg(long, env = "MALCOLM_RESUME")]
    resume: Option<PathBuf>,
    /// Also serve the gRPC control plane on this address while training (e.g. 127.0.0.1:50051).
    #[arg(long, env = "MALCOLM_CONTROL")]
    control: Option<String>,
    /// Validate the acting weights greedily this often (seconds; 0: never) on validation
    /// seeds, keep the best as best.safetensors and evaluate that one.
    #[arg(long, env = "MALCOLM_VALIDATE_EVERY_S", default_value_t = DEFAULT_VALIDATE_EVERY.as_secs_f64())]
    validate_every_s: f64,
    /// Validation episodes (seeds) per validation, each as long as a training episode.
    #[arg(long, env = "MALCOLM_VALIDATION_SEEDS", default_value_t = DEFAULT_VALIDATION_SEEDS)]
    validation_seeds: usize,
    /// A small run for smoke tests: 20 s of training, short episodes, 2 seeds.
    #[arg(long)]
    quick: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
    /// Embedded scenario spec, as for `train`.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "hetero")]
    scenario: String,
    /// Policies to compare (comma-separated specs); FCFS nodes for a spec ending in `+fcfs`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "po2+fcfs,jsq,slack-greedy,tod-n,random"
    )]
    policies: Vec<String>,
    /// Checkpoint of a learner to include (its policy name comes from --learner).
    #[arg(long, env = "MALCOLM_CHECKPOINT")]
    checkpoint: Option<PathBuf>,
    /// Learner that --checkpoint belongs to.
    #[arg(long, default_value = "malcolm-strict")]
    learner: String,
    #[arg(long, env = "MALCOLM_AGENTS_CONFIG")]
    agents_config: Option<PathBuf>,
    /// Held-out seeds per policy.
    #[arg(long, default_value_t = DEFAULT_EVAL_SEEDS)]
    seeds: usize,
    /// First seed (then consecutive ones). The default is the held-out test range; choose
    /// settings on the validation range (700000001, what `train` validates on) instead.
    #[arg(long, default_value_t = EVAL_SEED_BASE)]
    seed_base: u64,
    /// Results folder (default: results/eval-<scenario>-<unix time>).
    #[arg(long, env = "MALCOLM_RESULTS")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// Trace file written by `serve --record` or `train` (`.zst` is decompressed).
    trace: PathBuf,
    /// Policy that re-decides (default: the one named in the trace header).
    #[arg(long)]
    policy: Option<String>,
    /// Checkpoint loaded into the (learner) policy before replaying; it is replayed frozen.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, env = "MALCOLM_AGENTS_CONFIG")]
    agents_config: Option<PathBuf>,
    /// Also re-run each recorded workload in the embedded simulator under the policy and
    /// report its miss rate next to the recording's.
    #[arg(long)]
    counterfactual: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// What to measure: `bridge` (Step round trip over ipc/tcp, steps/s with concurrent envs).
    #[arg(default_value = "bridge")]
    what: String,
    /// Short run (for CI smoke tests); figures are noisier.
    #[arg(long)]
    quick: bool,
    /// Policy serving the benchmark steps (a trivial one measures the transport).
    #[arg(long, default_value = "round-robin")]
    policy: String,
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace for user-facing errors.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    // The config file only fills environment variables that are not set yet, before clap
    // reads them, so flags and real environment variables win.
    let pre = Cli::try_parse();
    if let Ok(cli) = &pre {
        if let Some(path) = &cli.config {
            let sub = match cli.command {
                Command::Serve(_) => "serve",
                Command::Train(_) => "train",
                Command::Eval(_) => "eval",
                Command::Replay(_) => "replay",
                Command::Bench(_) => "bench",
                Command::Env(_) => "env",
                Command::Health(_) => "health",
                Command::Experiment(_) => "experiment",
            };
            for (k, v) in config::env_from_file(path, sub)? {
                if std::env::var_os(&k).is_none() {
                    // SAFETY: single-threaded here; no other thread reads the environment yet.
                    unsafe { std::env::set_var(k, v) };
                }
            }
        }
    }
    let cli = match pre {
        Ok(c) if c.config.is_some() => Cli::parse(),
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::Train(a) => train(a),
        Command::Eval(a) => eval(a),
        Command::Replay(a) => replay_cmd(a),
        Command::Bench(a) => bench(a),
        Command::Env(a) => env_cmd(a),
        Command::Health(a) => health(a),
        Command::Experiment(a) => agent_server::experiment::run_cli(a),
    }
}

fn env_cmd(a: EnvArgs) -> Result<()> {
    let scenario = rack_sim::by_name(&a.scenario).context("--scenario")?;
    let env_id = a
        .env_id
        .clone()
        .unwrap_or_else(|| format!("rack-sim-{}", std::process::id()));
    let timeout = Duration::from_secs_f64(a.timeout_s);
    for k in 0..a.episodes {
        let seed = a.seed + k * a.seed_stride;
        let mut sim = rack_sim::RackSim::new(scenario.clone(), seed)?;
        let mut client = rack_sim::ZmqEnvClient::connect(&a.connect, timeout)
            .with_context(|| format!("connecting to {}", a.connect))?;
        let r = rack_sim::run_env_loop(&mut sim, &mut client, &env_id, 1)
            .with_context(|| format!("episode {k} against {}", a.connect))?;
        println!(
            "{env_id} episode {k} seed {seed}: {} tasks, miss rate {:.3}%, goodput {:.0}/s, p99 {:.1} us",
            r.finished,
            r.miss_rate * 100.0,
            r.goodput_per_s,
            r.latency.p99_ns / 1e3
        );
        if let Some(p) = &a.report {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            writeln!(f, "{}", serde_json::to_string(&r)?)?;
        }
    }
    Ok(())
}

fn health(a: HealthArgs) -> Result<()> {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let rt = runtime()?;
    let status = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", a.addr))?
            .connect_timeout(Duration::from_secs_f64(a.timeout_s))
            .timeout(Duration::from_secs_f64(a.timeout_s))
            .connect()
            .await?;
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        anyhow::Ok(reply.into_inner().status)
    })?;
    if status == 1 {
        println!("SERVING");
        Ok(())
    } else {
        bail!("health status {status} (not SERVING)")
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Resolves on Ctrl-C or SIGTERM (docker stop).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let shared = a.policy.shared()?;
    let (_, factory) = shared.active();
    if let Some(ckpt) = a.checkpoint.as_ref().filter(|p| p.exists()) {
        let info = factory
            .load_checkpoint(ckpt)
            .with_context(|| format!("loading checkpoint {}", ckpt.display()))?;
        tracing::info!(path = %ckpt.display(), version = info.policy_version, "checkpoint loaded");
    }
    shared.set_mode(a.mode.into());
    let ctx = zmq::Context::new();
    let bridge = server::bind(
        &ctx,
        BridgeConfig {
            endpoints: a.bind.clone(),
            workers: a.workers.unwrap_or(BridgeConfig::default().workers),
            session_timeout: Duration::from_secs_f64(a.session_timeout_s),
            ..BridgeConfig::default()
        },
    )?;
    let rt = runtime()?;
    rt.block_on(async move {
        let control = tokio::net::TcpListener::bind(&a.control)
            .await
            .with_context(|| format!("binding the control plane on {}", a.control))?;
        // Machine-readable lines for scripts that start the server on port 0.
        tracing::info!(
            bridge = ?bridge.endpoints(),
            control = %control.local_addr()?,
            policy = %shared.policy_name(),
            "agent server ready"
        );
        server::run(
            bridge,
            control,
            shared,
            ServeOptions {
                record: a.record,
                checkpoint_on_exit: a.checkpoint,
                scenario: a.scenario,
            },
            shutdown_signal(),
        )
        .await?;
        Ok(())
    })
}

fn default_out(prefix: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("results").join(format!("{}-{t}", prefix.replace([':', ',', '='], "_")))
}

fn train(a: TrainArgs) -> Result<()> {
    let agents = a.policy.agents()?;
    let shared = a.policy.shared()?;
    let out = a.out.clone().unwrap_or_else(|| default_out(&a.scenario));
    let (minutes, train_scenario, eval_scenario, eval_seeds) = if a.quick {
        let quick = with_default_length(&a.scenario, QUICK_TASKS);
        (
            a.minutes.min(1.0 / 3.0),
            quick.clone(),
            quick,
            a.eval_seeds.min(2),
        )
    } else {
        (
            a.minutes,
            with_default_length(&a.scenario, a.train_tasks),
            a.scenario.clone(),
            a.eval_seeds,
        )
    };
    if minutes <= 0.0 {
        bail!("--minutes must be positive");
    }
    let opts = JobOptions {
        policy: a.policy.policy.clone(),
        agents,
        train: TrainOptions {
            scenario: train_scenario.clone(),
            envs: a.envs.max(1),
            budget: Duration::from_secs_f64(minutes * 60.0),
            max_episodes: a.episodes,
            seed: a.seed,
            endpoint: None,
            show_progress: true,
            validation: (a.validate_every_s > 0.0 && a.validation_seeds > 0).then(|| {
                ValidationOptions {
                    scenario: train_scenario.clone(),
                    seeds: (0..a.validation_seeds as u64)
                        .map(|i| VALIDATION_SEED_BASE + i)
                        .collect(),
                    every: Duration::from_secs_f64(if a.quick {
                        a.validate_every_s.min(8.0)
                    } else {
                        a.validate_every_s
                    }),
                    best_checkpoint: out.join("best.safetensors"),
                    baseline: Some(DEFAULT_VALIDATION_BASELINE.to_string()),
                }
            }),
        },
        eval_scenario: eval_scenario.clone(),
        eval_seeds,
        eval_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        out: out.clone(),
        resume: a.resume,
        cases: None,
    };
    let stop = Shutdown::new();
    let rt = runtime()?;
    {
        let stop = stop.clone();
        rt.spawn(async move {
            shutdown_signal().await;
            tracing::warn!("interrupted: finishing the running episodes, saving a checkpoint");
            stop.trigger();
        });
    }
    if let Some(addr) = &a.control {
        let (shared, addr) = (shared.clone(), addr.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(&addr))
            .with_context(|| format!("binding the control plane on {addr}"))?;
        tracing::info!(control = %listener.local_addr()?, "control plane up while training");
        rt.spawn(agent_server::control::run(
            listener,
            shared,
            std::future::pending(),
        ));
    }
    eprintln!(
        "Training {} on `{}` for {:.1} min with {} env(s) over ZeroMQ, then evaluating on `{}`; \
         results in {}",
        opts.policy,
        train_scenario,
        minutes,
        opts.train.envs,
        eval_scenario,
        out.display()
    );
    let summary = job::run_main_job(shared, &opts, &stop)?;
    if summary.interrupted {
        eprintln!(
            "Interrupted after {} episodes; checkpoint and learning curve written to {}",
            summary.curve_len,
            out.display()
        );
        return Ok(());
    }
    println!("{}", summary.markdown);
    println!("Results: {}", out.display());
    Ok(())
}

/// `spec` with episodes of `tasks` tasks (warm-up a tenth of them), unless it sets `tasks`.
fn with_default_length(spec: &str, tasks: u64) -> String {
    if spec.contains("tasks=") {
        return spec.to_string();
    }
    let sep = if spec.contains(':') { ',' } else { ':' };
    format!("{spec}{sep}tasks={tasks},warmup={}", tasks / 10)
}

fn eval(a: EvalArgs) -> Result<()> {
    let agents = match &a.agents_config {
        None => AgentsConfig::default(),
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p)?)?,
    };
    let shared = Shared::new(&a.learner, registry::maker(agents.clone()))?;
    let mut cases = Vec::new();
    if let Some(ckpt) = &a.checkpoint {
        shared
            .active()
            .1
            .load_checkpoint(ckpt)
            .with_context(|| format!("loading {}", ckpt.display()))?;
        cases.push(EvalCase::new(
            &format!("{} (EDF)", a.learner),
            &a.learner,
            &a.scenario,
        ));
    }
    shared.set_mode(Mode::Eval);
    for p in &a.policies {
        let (spec, fcfs) = match p.strip_suffix("+fcfs") {
            Some(s) => (s, true),
            None => (p.as_str(), false),
        };
        let scenario = if fcfs {
            if a.scenario.contains(':') {
                format!("{},discipline=fcfs", a.scenario)
            } else {
                format!("{}:discipline=fcfs", a.scenario)
            }
        } else {
            a.scenario.clone()
        };
        let label = format!("{spec} ({})", if fcfs { "FCFS" } else { "EDF" });
        cases.push(EvalCase::new(&label, spec, &scenario));
    }
    let seeds: Vec<u64> = (0..a.seeds as u64).map(|i| a.seed_base + i).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runs = job::evaluate_with_learner(&shared, &agents, &cases, &seeds, threads, true)?;
    let out = a
        .out
        .unwrap_or_else(|| default_out(&format!("eval-{}", a.scenario)));
    std::fs::create_dir_all(&out)?;
    let rows: Vec<_> = runs.iter().map(|(r, _)| r.clone()).collect();
    results::write_csv(&out.join("eval.csv"), &rows)?;
    let summary = results::summarise(&rows);
    results::write_csv(&out.join("summary.csv"), &summary)?;
    let cdf: Vec<_> = runs.iter().map(|(r, rep)| (r.label.clone(), rep)).collect();
    results::latency_cdf_plot(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF on {}", a.scenario),
        &cdf,
    )?;
    let md = results::markdown_table(&summary);
    results::write_text(&out.join("summary.md"), &md)?;
    println!("{md}\nResults: {}", out.display());
    Ok(())
}

fn replay_cmd(a: ReplayArgs) -> Result<()> {
    let header = agent_server::trace::TraceReader::open(&a.trace)?
        .header()
        .clone();
    let policy = a.policy.clone().unwrap_or_else(|| header.policy.clone());
    if policy.is_empty() {
        bail!("the trace header names no policy: pass --policy");
    }
    let agents = match &a.agents_config {
        None => AgentsConfig::default(),
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p)?)?,
    };
    let shared = Shared::new(&policy, registry::maker(agents.clone()))?;
    if let Some(ckpt) = &a.checkpoint {
        shared.active().1.load_checkpoint(ckpt)?;
    }
    shared.set_mode(Mode::Frozen);
    let (report, workloads) = replay::replay(&a.trace, shared.clone())?;
    if let Some(e) = &report.stopped_early {
        eprintln!("warning: {e}");
    }
    println!(
        "replayed {} records ({} sessions, {} steps) with {policy}: agreement {:.4}% of {} decisions; \
         decide p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        report.records,
        report.sessions,
        report.steps,
        report.agreement * 100.0,
        report.decisions,
        report.decide_p50_us,
        report.decide_p99_us,
        report.decide_max_us
    );
    let mut cf_rows = Vec::new();
    if a.counterfactual {
        for w in &workloads {
            let r = agent_server::replay::counterfactual(w, shared.active().1)?;
            println!(
                "counterfactual {}: recorded workload of {} tasks under {policy}: miss rate {:.3}% (recorded {:.3}%), goodput {:.0}/s",
                w.hello.env_id,
                w.tasks.len(),
                r.miss_rate * 100.0,
                report.recorded_miss_rate() * 100.0,
                r.goodput_per_s
            );
            cf_rows.push(r);
        }
    }
    if let Some(p) = &a.json {
        let v = serde_json::json!({ "replay": report, "counterfactual": cf_rows });
        std::fs::write(p, serde_json::to_vec_pretty(&v)?)?;
    }
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    if a.what != "bridge" {
        bail!(
            "unknown benchmark {:?}: `bridge` here; the simulator and learner benchmarks are \
             `cargo bench -p rack-sim` and `cargo bench -p malcolm-agents`",
            a.what
        );
    }
    let shared = Shared::new(&a.policy, registry::maker(AgentsConfig::default()))?;
    shared.set_mode(Mode::Eval);
    let opts = if a.quick {
        BridgeBenchOptions::quick()
    } else {
        BridgeBenchOptions::full()
    };
    let r = bridge_bench(shared, &opts)?;
    println!(
        "bridge round trip, {}-node Step with {} tasks, policy {} ({} round trips each):",
        opts.nodes, opts.tasks, r.policy, opts.round_trips
    );
    println!(
        "{:<24} {:>8} {:>9} {:>9} {:>9}",
        "round trip", "bytes", "p50 us", "p99 us", "mean us"
    );
    for (what, figures) in [("bridge", &r.latency), ("raw ZeroMQ echo", &r.echo_floor)] {
        for l in figures.iter() {
            println!(
                "{:<24} {:>8} {:>9.1} {:>9.1} {:>9.1}",
                format!("{what} ({})", l.transport),
                l.message_bytes,
                l.p50_us,
                l.p99_us,
                l.mean_us
            );
        }
    }
    for (b, e) in r.latency.iter().zip(&r.echo_floor) {
        println!(
            "{}: the bridge adds {:.1} us to the transport's p50 ({:.2}x the raw echo)",
            b.transport,
            b.p50_us - e.p50_us,
            b.p50_us / e.p50_us
        );
    }
    println!(
        "{} concurrent envs over ipc: {:.0} steps/s, {:.0} decisions/s",
        r.envs, r.steps_per_second, r.decisions_per_second
    );
    Ok(())
}
