//! `agent-server experiment NAME`: the design's chapter 5.4 / 6.5 experiments on the embedded
//! simulator. Each trains the learners it needs (real ZeroMQ envs, [`crate::train`]), runs
//! every policy on held-out seeds ([`crate::job::EVAL_SEED_BASE`]..) in parallel, and writes a
//! results folder: `eval.csv` (every run), `summary.csv` (mean and 95% interval over seeds),
//! `summary.md` (markdown table and the design's claims checked against the data), PNG
//! figures with 95% error bars, `config.json` (the exact options and the command that
//! regenerates the folder) and the learners' checkpoints.
//!
//! - `hetero`: Po2 + FCFS on 2 fast : 3 slow, the same on 5 fast (ideal), Malcolm-Strict,
//!   original Malcolm (FCFS, trained), JSQ, slack-greedy, TOD-N, Po2 + EDF.
//! - `barrier-ablation`: barrier vs linear vs step reward, several training seeds each: miss
//!   rate, latency / relative deadline ([`margin`]), learning curves ([`curves`]).
//! - `heavy-tail`: miss rate against Pareto alpha 2.5 .. 1.1.
//! - `staleness`: goodput against heartbeat interval 10 .. 1000 us; JSQ on the stale view
//!   (the `jsq-stale` baseline) next to probing JSQ and Malcolm-Strict.
//! - `load`: p99.9 latency against load 0.4 .. 0.95.
//! - `microburst`: miss rate of the micro-burst tasks (class 1).
//! - `cvar`: CVaR alpha 0.05 vs 0.10 vs 1.0.

mod barrier;
pub mod curves;
mod cvar;
mod figures;
mod heavy_tail;
mod hetero;
mod load;
pub mod margin;
mod microburst;
mod points;
mod staleness;

use barrier::barrier_ablation;
use cvar::cvar;
pub use figures::*;
use heavy_tail::heavy_tail;
use hetero::hetero;
use load::load;
use microburst::microburst;
pub use microburst::microburst_eval_scenario;
pub use points::*;
use staleness::staleness;

use crate::eval::{self, EvalRow};
use crate::job::{self, EVAL_SEED_BASE};
use crate::plots::{line_chart, Chart, Series};
use crate::results::{self, SummaryRow};
use crate::stats::MeanCi;
use crate::train::{
    train, CurvePoint, TrainOptions, ValidationOptions, DEFAULT_VALIDATE_EVERY,
    DEFAULT_VALIDATION_SEEDS, VALIDATION_SEED_BASE,
};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use malcolm_agents::config::RewardKindName;
use malcolm_agents::AgentsConfig;
use malcolm_policies::{Mode, PolicyFactory};
use malcolm_serve::bridge::Shutdown;
use malcolm_serve::registry;
use malcolm_serve::shared::Shared;
use margin::MarginHist;
use rack_sim::{Report, Scenario};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The experiments, in the order `all` runs them.
pub const NAMES: &[&str] = &[
    "hetero",
    "barrier-ablation",
    "heavy-tail",
    "staleness",
    "load",
    "microburst",
    "cvar",
];

/// Pareto tails of `heavy-tail` (design.md section 9 sweeps 1.1..2.5).
pub const ALPHAS: &[f64] = &[2.5, 2.0, 1.5, 1.3, 1.1];
/// The tail the `heavy-tail` learners train at.
pub const HEAVY_TAIL_TRAIN_ALPHA: f64 = 1.3;
/// Heartbeat intervals of `staleness`, us.
pub const HEARTBEATS_US: &[u64] = &[10, 50, 100, 500, 1000];
/// The interval the `staleness` learner trains at (the scenario default).
pub const STALENESS_TRAIN_HB_US: u64 = 100;
/// Loads of `load`.
pub const LOADS: &[f64] = &[0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
/// The load the `load` learners train at.
pub const LOAD_TRAIN_RHO: f64 = 0.8;
/// CVaR levels of `cvar` (1.0 is risk-neutral).
pub const CVAR_ALPHAS: &[f64] = &[0.05, 0.10, 1.0];

/// Default training budget per learner, seconds of wall clock, chosen so that every
/// experiment (training + evaluation) stays under 30 minutes on a 2-core machine.
fn default_train_s(name: &str) -> f64 {
    match name {
        "hetero" => 540.0,           // 2 learners
        "barrier-ablation" => 150.0, // 3 kinds x 3 seeds
        "heavy-tail" => 480.0,       // 2 learners, 15 evaluation points
        "staleness" => 720.0,        // 1 learner
        "load" => 420.0,             // 2 learners, 28 evaluation points
        "microburst" => 480.0,       // 2 learners
        "cvar" => 360.0,             // 3 learners
        _ => 300.0,
    }
}

/// `agent-server experiment NAME`.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct ExperimentArgs {
    /// Which experiment: hetero, barrier-ablation, heavy-tail, staleness, load, microburst,
    /// cvar; several separated by commas (run in sequence, each into its own subfolder, and
    /// sharing identical learners); or `all` for every one.
    #[arg(value_parser = parse_names)]
    pub name: String,
    /// Smoke-test size: ~12 s of training per learner, 3000-task episodes, 2 seeds.
    #[arg(long)]
    pub quick: bool,
    /// Results folder (default: results/experiment-NAME-<unix time>).
    #[arg(long, env = "MALCOLM_RESULTS")]
    pub out: Option<PathBuf>,
    /// Held-out evaluation seeds per point (default 5; 2 with --quick).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Training budget per learner in seconds of wall clock (default per experiment: hetero
    /// 540, barrier-ablation 150, heavy-tail 480, staleness 720, load 420, microburst 480,
    /// cvar 360; 12 with --quick).
    #[arg(long)]
    pub train_s: Option<f64>,
    /// Training runs per reward kind in barrier-ablation (default 3; 2 with --quick).
    #[arg(long)]
    pub train_seeds: Option<usize>,
    /// Measured tasks per episode, training and evaluation (default 20000; 3000 with --quick).
    #[arg(long)]
    pub tasks: Option<u64>,
    /// Warm-up tasks per episode, excluded from the metrics (default tasks / 10).
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Concurrent training envs over ZeroMQ.
    #[arg(long, default_value_t = 2)]
    pub envs: usize,
    /// Evaluation threads (default: number of cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Base seed of the training episodes and learners.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Only redraw the sweep figures (heavy-tail, staleness, load) of an existing results
    /// folder (--out) from its summary.csv; nothing is trained or run.
    #[arg(long)]
    pub replot: bool,
    /// JSON file with the learners' hyper-parameters (defaults: design.md section 7); the
    /// experiments vary reward kind, CVaR alpha and seed on top of it.
    #[arg(long, env = "MALCOLM_AGENTS_CONFIG")]
    pub agents_config: Option<PathBuf>,
}

/// Accepts `all`, one experiment name, or several separated by commas.
fn parse_names(v: &str) -> Result<String, String> {
    if v == "all" {
        return Ok(v.into());
    }
    for n in v.split(',') {
        if !NAMES.contains(&n) {
            return Err(format!(
                "unknown experiment {n:?}: one of {}, or all",
                NAMES.join(", ")
            ));
        }
    }
    Ok(v.into())
}

/// The resolved size of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Size {
    pub quick: bool,
    pub train_s: f64,
    pub tasks: u64,
    pub warmup: u64,
    pub eval_seeds: usize,
    pub train_seeds: usize,
    pub envs: usize,
    pub threads: usize,
    pub seed: u64,
}

impl Size {
    pub fn resolve(a: &ExperimentArgs, name: &str) -> Self {
        let tasks = a.tasks.unwrap_or(if a.quick { 3_000 } else { 20_000 });
        Self {
            quick: a.quick,
            train_s: a
                .train_s
                .unwrap_or(if a.quick { 12.0 } else { default_train_s(name) }),
            tasks,
            warmup: a.warmup.unwrap_or(tasks / 10),
            eval_seeds: a.seeds.unwrap_or(if a.quick { 2 } else { 5 }).max(1),
            train_seeds: a.train_seeds.unwrap_or(if a.quick { 2 } else { 3 }).max(1),
            envs: a.envs.max(1),
            threads: a
                .threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
                .max(1),
            seed: a.seed,
        }
    }

    /// The command that reruns an experiment at exactly this size.
    pub fn command(&self, name: &str, out: &Path, agents_config: Option<&Path>) -> String {
        let mut c = format!(
            "target/release/agent-server experiment {name}{} --out {} --seeds {} --train-s {} \
             --tasks {} --warmup {} --envs {} --seed {}",
            if self.quick { " --quick" } else { "" },
            out.display(),
            self.eval_seeds,
            self.train_s,
            self.tasks,
            self.warmup,
            self.envs,
            self.seed
        );
        if name == "barrier-ablation" {
            c += &format!(" --train-seeds {}", self.train_seeds);
        }
        if let Some(p) = agents_config {
            c += &format!(" --agents-config {}", p.display());
        }
        c
    }
}

pub use crate::spec::with;

/// A trained learner, kept for the rest of the process (`all` reuses identical ones).
#[derive(Clone)]
pub struct Trained {
    pub factory: Arc<dyn PolicyFactory>,
    pub curve: Vec<CurvePoint>,
    pub policy: String,
    pub scenario: String,
    pub wall_s: f64,
}

/// What every experiment shares: sizes, the base agents configuration, the learner cache.
pub struct Ctx {
    pub args: ExperimentArgs,
    pub agents: AgentsConfig,
    cache: Mutex<HashMap<String, Trained>>,
    /// Learners trained by this process (not counting cache hits), for the logs.
    pub trained: AtomicUsize,
}

impl Ctx {
    pub fn new(args: ExperimentArgs) -> Result<Self> {
        let agents = registry::load_agents_config(args.agents_config.as_deref())?;
        Ok(Self {
            args,
            agents,
            cache: Mutex::new(HashMap::new()),
            trained: AtomicUsize::new(0),
        })
    }

    /// Trains `policy` ("malcolm-strict" or "malcolm") with `agents` on `scenario` for the
    /// size's budget, or returns the identical learner trained earlier in this process.
    pub fn train(
        &self,
        size: &Size,
        policy: &str,
        agents: &AgentsConfig,
        scenario: &str,
        train_seed: u64,
    ) -> Result<Trained> {
        let key = format!(
            "{policy}|{}|{scenario}|{train_seed}|{}|{}",
            serde_json::to_string(agents)?,
            size.train_s,
            size.envs
        );
        if let Some(t) = self.cache.lock().expect("cache lock").get(&key) {
            eprintln!("  reusing the {policy} learner trained on `{scenario}` earlier in this run");
            return Ok(t.clone());
        }
        let shared = Shared::new(policy, registry::maker(agents.clone()))
            .with_context(|| format!("creating {policy}"))?;
        shared.set_mode(Mode::Train);
        let t0 = Instant::now();
        eprintln!(
            "  training {policy} on `{scenario}` for {:.0} s ({} envs)",
            size.train_s, size.envs
        );
        let best_dir = tempfile::tempdir().context("a temporary folder for the best checkpoint")?;
        let validation = ValidationOptions {
            scenario: scenario.to_string(),
            seeds: (0..DEFAULT_VALIDATION_SEEDS as u64)
                .map(|i| VALIDATION_SEED_BASE + i)
                .collect(),
            every: if size.quick {
                Duration::from_secs(5)
            } else {
                DEFAULT_VALIDATE_EVERY
            },
            best_checkpoint: best_dir.path().join("best.safetensors"),
            baseline: None,
        };
        let outcome = train(
            shared.clone(),
            &TrainOptions {
                scenario: scenario.to_string(),
                envs: size.envs,
                budget: Duration::from_secs_f64(size.train_s),
                max_episodes: None,
                seed: train_seed,
                endpoint: None,
                show_progress: !size.quick && std::io::IsTerminal::is_terminal(&std::io::stderr()),
                validation: Some(validation.clone()),
            },
            &Shutdown::new(),
        )
        .with_context(|| format!("training {policy} on {scenario}"))?;
        let factory = shared.active().1;
        // Evaluate the best validated weights (as the main job does).
        if outcome.best.is_some() {
            factory
                .load_checkpoint(&validation.best_checkpoint)
                .context("loading the best validation checkpoint")?;
        }
        let curve = outcome.curve;
        factory.set_mode(Mode::Eval);
        let st = factory.status();
        eprintln!(
            "  trained {policy}: {} episodes, {} decisions, {} updates in {:.0} s",
            curve.len(),
            curve.last().map_or(0, |p| p.decisions),
            st.updates,
            t0.elapsed().as_secs_f64()
        );
        self.trained.fetch_add(1, Ordering::Relaxed);
        let t = Trained {
            factory,
            curve,
            policy: policy.to_string(),
            scenario: scenario.to_string(),
            wall_s: t0.elapsed().as_secs_f64(),
        };
        self.cache
            .lock()
            .expect("cache lock")
            .insert(key, t.clone());
        Ok(t)
    }
}

fn learner_line(label: &str, t: &Trained) -> String {
    format!(
        "- {label}: `{}` trained on `{}` for {:.0} s of wall clock ({} episodes, {} decisions).\n",
        t.policy,
        t.scenario,
        t.wall_s,
        t.curve.len(),
        t.curve.last().map_or(0, |p| p.decisions)
    )
}

fn save_checkpoint(dir: &Path, name: &str, t: &Trained) {
    let ck = dir.join("checkpoints");
    if std::fs::create_dir_all(&ck).is_ok() {
        if let Err(e) = t
            .factory
            .save_checkpoint(&ck.join(format!("{name}.safetensors")))
        {
            tracing::warn!(%e, name, "checkpoint not saved");
        }
    }
}

/// What one experiment produced.
pub struct Outcome {
    pub markdown: String,
    pub wall_s: f64,
}

/// Writes `config.json`: the experiment, its resolved size, the scenarios and policies run,
/// the agents configuration and the command that regenerates the folder.
fn write_config(
    ctx: &Ctx,
    name: &str,
    size: &Size,
    out: &Path,
    points: &[Point],
    extra: serde_json::Value,
) -> Result<()> {
    let cmd = size.command(name, out, ctx.args.agents_config.as_deref());
    // Every scenario as it ran, fully resolved (defaults included).
    let scenarios: BTreeMap<&str, &Scenario> = points
        .iter()
        .map(|p| (p.scenario_spec.as_str(), &p.scenario))
        .collect();
    let v = serde_json::json!({
        "experiment": name,
        "command": cmd,
        "args": ctx.args,
        "size": size,
        "eval_seeds": (0..size.eval_seeds as u64).map(|i| EVAL_SEED_BASE + i).collect::<Vec<_>>(),
        "points": points,
        "scenarios": scenarios,
        "agents": ctx.agents,
        "details": extra,
    });
    results::write_text(&out.join("config.json"), &serde_json::to_string_pretty(&v)?)?;
    Ok(())
}

fn header(name: &str, size: &Size, out: &Path, ctx: &Ctx, points: &[Point], what: &str) -> String {
    let estimates: Vec<String> = points.iter().map(|p| p.scenario.estimate.label()).collect();
    format!(
        "# Experiment `{name}`\n\n{what}\n\nService estimates (what every policy, the \
         deadlines D = A + F x estimate and EDF's admission test see): {}.\n\nSize: {} s of \
         training per learner ({} envs over ZeroMQ), episodes of {} measured tasks after {} \
         warm-up tasks, {} held-out seeds per point ({}..); ± is the 95% interval over seeds \
         (Student t). {}\n\nRegenerate: `{}`\n\n",
        results::distinct(estimates.iter().map(String::as_str)),
        size.train_s,
        size.envs,
        size.tasks.saturating_sub(size.warmup),
        size.warmup,
        size.eval_seeds,
        EVAL_SEED_BASE,
        results::TAIL_NOTE,
        size.command(name, out, ctx.args.agents_config.as_deref())
    )
}

/// Writes `eval.csv` (every run) and `summary.csv` (per point) and returns the summary.
fn finish(out: &Path, points: &[Point], runs: &[Run]) -> Result<Vec<PointRow>> {
    results::write_csv(&out.join("eval.csv"), &run_rows(runs))?;
    let rows = point_rows(points, runs);
    results::write_csv(&out.join("summary.csv"), &rows)?;
    Ok(rows)
}

fn write_md(out: &Path, mut md: String, t0: Instant) -> Result<Outcome> {
    let wall = t0.elapsed().as_secs_f64();
    let _ = writeln!(
        md,
        "\nWall time of this experiment on this machine: {wall:.0} s."
    );
    results::write_text(&out.join("summary.md"), &md)?;
    Ok(Outcome {
        markdown: md,
        wall_s: wall,
    })
}

fn find<'a>(rows: &'a [PointRow], label: &str, x: f64) -> Option<&'a PointRow> {
    rows.iter()
        .find(|r| r.label == label && (r.x.total_cmp(&x).is_eq() || (x.is_nan() && r.x.is_nan())))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "holds"
    } else {
        "does NOT hold"
    }
}

// --- the experiments -------------------------------------------------------------------

const MS: &str = "Malcolm-Strict (IQN+CVaR, EDF)";
const MALCOLM: &str = "Malcolm (actor-critic, FCFS)";
const PO2_FCFS: &str = "Po2 + FCFS";

/// Learner keys used as `Point::policy` mapped to their factories.
type Learners = HashMap<String, Arc<dyn PolicyFactory>>;

/// Trains Malcolm-Strict (on `ms_spec`, EDF nodes) and Malcolm (on `malcolm_spec`, FCFS
/// nodes), keeps both checkpoints in `out`, and returns them with the learner map the sweep
/// points refer to (`learner:ms`, `learner:malcolm`).
fn train_ms_and_malcolm(
    ctx: &Ctx,
    size: &Size,
    out: &Path,
    ms_spec: &str,
    malcolm_spec: &str,
) -> Result<(Trained, Trained, Learners)> {
    let ms = ctx.train(size, "malcolm-strict", &ctx.agents, ms_spec, size.seed)?;
    let mal = ctx.train(size, "malcolm", &ctx.agents, malcolm_spec, size.seed)?;
    save_checkpoint(out, "malcolm-strict", &ms);
    save_checkpoint(out, "malcolm", &mal);
    let learners = [
        ("learner:ms".to_string(), ms.factory.clone()),
        ("learner:malcolm".to_string(), mal.factory.clone()),
    ]
    .into();
    Ok((ms, mal, learners))
}

/// The tail every parameter sweep shares: `config.json`, evaluation of every point on every
/// seed, the CSVs and the sweep figures. Returns the per-point rows.
fn run_sweep(
    ctx: &Ctx,
    name: &str,
    size: &Size,
    out: &Path,
    points: &[Point],
    learners: &Learners,
    extra: serde_json::Value,
) -> Result<Vec<PointRow>> {
    write_config(ctx, name, size, out, points, extra)?;
    let runs = evaluate_points(ctx, size, points, learners)?;
    let rows = finish(out, points, &runs)?;
    sweep_figures(name, out, &rows)?;
    Ok(rows)
}

/// Runs one experiment into `out`.
pub fn run_one(ctx: &Ctx, name: &str, out: &Path) -> Result<Outcome> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let size = Size::resolve(&ctx.args, name);
    if size.train_s.is_nan() || size.train_s <= 0.0 {
        bail!("--train-s must be positive");
    }
    if size.warmup >= size.tasks {
        bail!("--warmup must be below --tasks");
    }
    eprintln!(
        "experiment {name}: {} s training per learner, {} tasks, {} seeds -> {}",
        size.train_s,
        size.tasks,
        size.eval_seeds,
        out.display()
    );
    let o = match name {
        "hetero" => hetero(ctx, &size, out),
        "barrier-ablation" => barrier_ablation(ctx, &size, out),
        "heavy-tail" => heavy_tail(ctx, &size, out),
        "staleness" => staleness(ctx, &size, out),
        "load" => load(ctx, &size, out),
        "microburst" => microburst(ctx, &size, out),
        "cvar" => cvar(ctx, &size, out),
        other => bail!("unknown experiment {other:?} (known: {})", NAMES.join(", ")),
    }?;
    eprintln!("experiment {name} done in {:.0} s", o.wall_s);
    Ok(o)
}

/// The CLI entry: one experiment, or `all` in sequence (each into `<out>/<name>`).
pub fn run_cli(args: ExperimentArgs) -> Result<()> {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(format!("experiment-{}-{t}", args.name)));
    let name = args.name.clone();
    if args.replot {
        if args.out.is_none() {
            bail!("--replot needs --out (the results folder to redraw)");
        }
        for n in name.split(',') {
            if n == "all" {
                for m in NAMES {
                    replot(m, &out.join(m)).or_else(|e| {
                        if out.join(m).join("summary.csv").exists() {
                            Err(e)
                        } else {
                            Ok(())
                        }
                    })?;
                }
            } else {
                replot(n, &out)?;
            }
        }
        println!("Redrawn: {}", out.display());
        return Ok(());
    }
    let ctx = Ctx::new(args)?;
    if name == "all" || name.contains(',') {
        let names: Vec<&str> = if name == "all" {
            NAMES.to_vec()
        } else {
            name.split(',').collect()
        };
        let mut index = String::from(
            "# All experiments\n\n| experiment | wall time (s) | folder |\n|---|---:|---|\n",
        );
        for n in names {
            let o = run_one(&ctx, n, &out.join(n))?;
            let _ = writeln!(index, "| {n} | {:.0} | `{n}/` |", o.wall_s);
            results::write_text(&out.join("index.md"), &index)?;
        }
        println!("{index}\nResults: {}", out.display());
    } else {
        let o = run_one(&ctx, &name, &out)?;
        println!("{}\nResults: {}", o.markdown, out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_commands() {
        let mut a = ExperimentArgs {
            name: "barrier-ablation".into(),
            quick: false,
            out: None,
            seeds: None,
            train_s: Some(90.0),
            train_seeds: None,
            tasks: Some(10_000),
            warmup: None,
            envs: 2,
            threads: Some(2),
            seed: 3,
            replot: false,
            agents_config: None,
        };
        let s = Size::resolve(&a, "barrier-ablation");
        assert_eq!(
            (s.train_s, s.tasks, s.warmup, s.eval_seeds, s.train_seeds),
            (90.0, 10_000, 1_000, 5, 3)
        );
        let c = s.command("barrier-ablation", Path::new("/tmp/x"), None);
        assert!(
            c.contains("--train-s 90 --tasks 10000 --warmup 1000"),
            "{c}"
        );
        assert!(c.contains("--train-seeds 3"), "{c}");
        a.quick = true;
        a.train_s = None;
        a.tasks = None;
        let q = Size::resolve(&a, "hetero");
        assert_eq!(
            (q.train_s, q.tasks, q.eval_seeds, q.train_seeds),
            (12.0, 3_000, 2, 2)
        );
        assert!(q
            .command("hetero", Path::new("o"), None)
            .contains(" --quick "));
        for n in NAMES {
            assert!(default_train_s(n) > 0.0);
        }
    }
}
