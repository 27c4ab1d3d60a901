//! The `agent-server` subcommands that belong to the lab: their arguments (clap derive, every
//! flag with its environment variable) and what they run. Each returns the text the binary
//! prints on stdout; progress and logs go to stderr.

use crate::bench::{bridge_bench, BridgeBenchOptions};
use crate::eval::EvalCase;
use crate::job::{self, JobOptions, EVAL_SEED_BASE};
use crate::results;
use crate::spec;
use crate::train::{
    TrainOptions, ValidationOptions, DEFAULT_VALIDATE_EVERY, DEFAULT_VALIDATION_BASELINE,
    DEFAULT_VALIDATION_SEEDS, VALIDATION_SEED_BASE,
};
use anyhow::{bail, Context, Result};
use malcolm_policies::Mode;
use malcolm_serve::registry::{self, PolicyArgs};
use malcolm_serve::shared::Shared;
use std::path::PathBuf;
use std::time::Duration;

/// Training budget of the main job: long enough for the learner to pass the baselines on
/// `hetero` on a 2-core machine, short enough to wait for.
pub const DEFAULT_TRAIN_MINUTES: f64 = 8.0;
/// Tasks per training episode: short episodes give the learning curve many points and let
/// the learner see many episode starts; evaluation runs the scenario's full length.
pub const DEFAULT_TRAIN_TASKS: u64 = 20_000;
/// Tasks per episode (training and evaluation) with --quick.
pub const QUICK_TASKS: u64 = 6_000;
/// Held-out seeds per evaluated policy: enough for a 95% interval.
pub const DEFAULT_EVAL_SEEDS: usize = 5;
/// Training budget with --quick.
const QUICK_MINUTES: f64 = 1.0 / 3.0;
/// Validation interval with --quick (seconds): several validations in the short budget.
const QUICK_VALIDATE_EVERY_S: f64 = 8.0;

/// `agent-server train`: the main job.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Embedded scenario (hetero, ideal, homogeneous-16/32/64, heavy-tail, microburst,
    /// staleness), optionally with overrides: `hetero:rho=0.8,f=10`.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "hetero")]
    pub scenario: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Training budget in minutes of wall clock.
    #[arg(long, env = "MALCOLM_TRAIN_MINUTES", default_value_t = DEFAULT_TRAIN_MINUTES)]
    pub minutes: f64,
    /// Stop training after this many episodes (whichever comes first).
    #[arg(long, env = "MALCOLM_EPISODES")]
    pub episodes: Option<u64>,
    /// Concurrent simulator envs feeding the learner over ZeroMQ.
    #[arg(long, env = "MALCOLM_ENVS", default_value_t = 2)]
    pub envs: usize,
    /// Base seed of the training episodes.
    #[arg(long, env = "MALCOLM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Tasks per training episode (evaluation uses the scenario's own length, 1e6 by default).
    #[arg(long, env = "MALCOLM_TRAIN_TASKS", default_value_t = DEFAULT_TRAIN_TASKS)]
    pub train_tasks: u64,
    /// Held-out evaluation seeds per policy (0: train and validate only).
    #[arg(long, env = "MALCOLM_EVAL_SEEDS", default_value_t = DEFAULT_EVAL_SEEDS)]
    pub eval_seeds: usize,
    /// Results folder (default: results/<scenario>-<unix time>).
    #[arg(long, env = "MALCOLM_RESULTS")]
    pub out: Option<PathBuf>,
    /// Resume from this checkpoint.
    #[arg(long, env = "MALCOLM_RESUME")]
    pub resume: Option<PathBuf>,
    /// Also serve the gRPC control plane on this address while training (e.g. 127.0.0.1:50051).
    #[arg(long, env = "MALCOLM_CONTROL")]
    pub control: Option<String>,
    /// Validate the acting weights greedily this often (seconds; 0: never) on validation
    /// seeds, keep the best as best.safetensors and evaluate that one.
    #[arg(long, env = "MALCOLM_VALIDATE_EVERY_S", default_value_t = DEFAULT_VALIDATE_EVERY.as_secs_f64())]
    pub validate_every_s: f64,
    /// Validation episodes (seeds) per validation, each as long as a training episode.
    #[arg(long, env = "MALCOLM_VALIDATION_SEEDS", default_value_t = DEFAULT_VALIDATION_SEEDS)]
    pub validation_seeds: usize,
    /// A small run for smoke tests: 20 s of training, short episodes, 2 seeds.
    #[arg(long)]
    pub quick: bool,
}

impl TrainArgs {
    /// The main job these arguments describe, and a line announcing it.
    pub fn job(&self) -> Result<(JobOptions, String)> {
        let agents = registry::load_agents_config(self.policy.agents_config.as_deref())?;
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| spec::default_out(&self.scenario));
        let (minutes, train_scenario, eval_scenario, eval_seeds) = if self.quick {
            let quick = spec::with_default_length(&self.scenario, QUICK_TASKS);
            (
                self.minutes.min(QUICK_MINUTES),
                quick.clone(),
                quick,
                self.eval_seeds.min(2),
            )
        } else {
            (
                self.minutes,
                spec::with_default_length(&self.scenario, self.train_tasks),
                self.scenario.clone(),
                self.eval_seeds,
            )
        };
        if minutes.is_nan() || minutes <= 0.0 {
            bail!("--minutes must be positive");
        }
        let validation =
            (self.validate_every_s > 0.0 && self.validation_seeds > 0).then(|| ValidationOptions {
                scenario: train_scenario.clone(),
                seeds: (0..self.validation_seeds as u64)
                    .map(|i| VALIDATION_SEED_BASE + i)
                    .collect(),
                every: Duration::from_secs_f64(if self.quick {
                    self.validate_every_s.min(QUICK_VALIDATE_EVERY_S)
                } else {
                    self.validate_every_s
                }),
                best_checkpoint: out.join("best.safetensors"),
                baseline: Some(DEFAULT_VALIDATION_BASELINE.to_string()),
            });
        let opts = JobOptions {
            policy: self.policy.policy.clone(),
            agents,
            train: TrainOptions {
                scenario: train_scenario.clone(),
                envs: self.envs.max(1),
                budget: Duration::from_secs_f64(minutes * 60.0),
                max_episodes: self.episodes,
                seed: self.seed,
                endpoint: None,
                show_progress: true,
                validation,
            },
            eval_scenario: eval_scenario.clone(),
            eval_seeds,
            eval_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            out: out.clone(),
            resume: self.resume.clone(),
            cases: None,
        };
        let banner = format!(
            "Training {} on `{}` for {:.1} min with {} env(s) over ZeroMQ, then evaluating on \
             `{}`; results in {}",
            opts.policy,
            train_scenario,
            minutes,
            opts.train.envs,
            eval_scenario,
            out.display()
        );
        Ok((opts, banner))
    }
}

/// `agent-server eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Embedded scenario spec, as for `train`.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "hetero")]
    pub scenario: String,
    /// Policies to compare (comma-separated specs); FCFS nodes for a spec ending in `+fcfs`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "po2+fcfs,jsq,slack-greedy,tod-n,random"
    )]
    pub policies: Vec<String>,
    /// Checkpoint of a learner to include (its policy name comes from --learner).
    #[arg(long, env = "MALCOLM_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// Learner that --checkpoint belongs to.
    #[arg(long, default_value = "malcolm-strict")]
    pub learner: String,
    #[arg(long, env = "MALCOLM_AGENTS_CONFIG")]
    pub agents_config: Option<PathBuf>,
    /// Held-out seeds per policy.
    #[arg(long, default_value_t = DEFAULT_EVAL_SEEDS)]
    pub seeds: usize,
    /// First seed (then consecutive ones). The default is the held-out test range; choose
    /// settings on the validation range (700000001, what `train` validates on) instead.
    #[arg(long, default_value_t = EVAL_SEED_BASE)]
    pub seed_base: u64,
    /// Results folder (default: results/eval-<scenario>-<unix time>).
    #[arg(long, env = "MALCOLM_RESULTS")]
    pub out: Option<PathBuf>,
}

/// Runs `eval`; returns the summary table and where the results are.
pub fn eval(a: EvalArgs) -> Result<String> {
    let agents = registry::load_agents_config(a.agents_config.as_deref())?;
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
        let (policy, scenario, label) = spec::eval_entry(p, &a.scenario);
        cases.push(EvalCase::new(&label, &policy, &scenario));
    }
    let seeds: Vec<u64> = (0..a.seeds as u64).map(|i| a.seed_base + i).collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runs = job::evaluate_with_learner(&shared, &agents, &cases, &seeds, threads, true)?;
    let out = a
        .out
        .unwrap_or_else(|| spec::default_out(&format!("eval-{}", a.scenario)));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let rows: Vec<_> = runs.iter().map(|r| r.row.clone()).collect();
    results::write_csv(&out.join("eval.csv"), &rows)?;
    let summary = results::summarise(&rows);
    results::write_csv(&out.join("summary.csv"), &summary)?;
    let cdf: Vec<_> = runs
        .iter()
        .map(|r| (r.row.label.clone(), &r.report))
        .collect();
    results::latency_cdf_plot(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF on {}", a.scenario),
        &cdf,
    )?;
    let md = results::markdown_table(&summary);
    results::write_text(&out.join("summary.md"), &md)?;
    Ok(format!("{md}\nResults: {}", out.display()))
}

/// `agent-server replay`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    /// Trace file written by `serve --record` (`.zst` is decompressed).
    pub trace: PathBuf,
    /// Policy that re-decides (default: the one named in the trace header).
    #[arg(long)]
    pub policy: Option<String>,
    /// Checkpoint loaded into the (learner) policy before replaying; it is replayed frozen.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[arg(long, env = "MALCOLM_AGENTS_CONFIG")]
    pub agents_config: Option<PathBuf>,
    /// Also re-run each recorded workload in the embedded simulator under the policy and
    /// report its miss rate next to the recording's.
    #[arg(long)]
    pub counterfactual: bool,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs `replay`; returns the lines to print (warnings about damage go to the log).
pub fn replay(a: ReplayArgs) -> Result<String> {
    use crate::replay;
    use std::fmt::Write as _;
    let header = malcolm_serve::trace::TraceReader::open(&a.trace)?
        .header()
        .clone();
    let policy = a.policy.clone().unwrap_or_else(|| header.policy.clone());
    if policy.is_empty() {
        bail!("the trace header names no policy: pass --policy");
    }
    let agents = registry::load_agents_config(a.agents_config.as_deref())?;
    let shared = Shared::new(&policy, registry::maker(agents))?;
    if let Some(ckpt) = &a.checkpoint {
        shared.active().1.load_checkpoint(ckpt)?;
    }
    shared.set_mode(Mode::Frozen);
    let (report, workloads) = replay::replay(&a.trace, shared.clone())?;
    let mut out = String::new();
    if let Some(e) = &report.stopped_early {
        let _ = writeln!(out, "warning: {e}");
    }
    if !report.damaged.is_empty() {
        let _ = writeln!(
            out,
            "warning: {} damaged record(s) skipped; the first: {}",
            report.damaged.len(),
            report.damaged[0]
        );
    }
    let _ = writeln!(
        out,
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
            let r = replay::counterfactual(w, shared.active().1)?;
            let _ = writeln!(
                out,
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
        std::fs::write(p, serde_json::to_vec_pretty(&v)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(out.trim_end().to_string())
}

/// `agent-server bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure: `bridge` (the Step round trip through the bridge next to a bare
    /// ZeroMQ ROUTER's canned reply, alternated in one run, over ipc and tcp; steps/s with
    /// concurrent envs).
    #[arg(default_value = "bridge")]
    pub what: String,
    /// Short run (for CI smoke tests); figures are noisier.
    #[arg(long)]
    pub quick: bool,
    /// Policy serving the benchmark steps (a trivial one measures the transport).
    #[arg(long, default_value = "round-robin")]
    pub policy: String,
    /// Timed round trips per path (default 20000; 1000 with --quick).
    #[arg(long)]
    pub round_trips: Option<u32>,
    /// Bridge worker threads (default: number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Write the figures as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Runs a benchmark; returns its table.
pub fn bench(a: BenchArgs) -> Result<String> {
    if a.what != "bridge" {
        bail!(
            "unknown benchmark {:?}: `bridge` here; the simulator and learner benchmarks are \
             `cargo bench -p rack-sim` and `cargo bench -p malcolm-agents`",
            a.what
        );
    }
    let shared = Shared::new(&a.policy, registry::maker(Default::default()))?;
    shared.set_mode(Mode::Eval);
    let mut opts = if a.quick {
        BridgeBenchOptions::quick()
    } else {
        BridgeBenchOptions::full()
    };
    if let Some(n) = a.round_trips {
        opts.round_trips = n.max(1);
    }
    if let Some(w) = a.workers {
        opts.workers = w;
    }
    let r = bridge_bench(shared, &opts)?;
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(r.table())
}
