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

pub mod curves;
pub mod margin;

use crate::eval::{EvalCase, EvalRow};
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
use malcolm_serve::loopback::Loopback;
use malcolm_serve::registry;
use malcolm_serve::shared::Shared;
use margin::{MarginHist, Tap};
use rack_sim::{RackSim, Report, Scenario};
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

/// One evaluated configuration: a policy on a scenario, one point of a series.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    /// Series (legend entry) and table row.
    pub label: String,
    /// Policy spec, or the key of a trained learner in the factory map.
    pub policy: String,
    /// Scenario spec as run (for the CSV; `scenario` below is what actually runs).
    pub scenario_spec: String,
    #[serde(skip)]
    pub scenario: Scenario,
    /// Swept parameter (NaN when the experiment sweeps nothing).
    pub x: f64,
}

impl Point {
    pub fn new(label: &str, policy: &str, spec: &str, x: f64) -> Result<Self> {
        Ok(Self {
            label: label.into(),
            policy: policy.into(),
            scenario_spec: spec.into(),
            scenario: rack_sim::by_name(spec).with_context(|| format!("scenario {spec}"))?,
            x,
        })
    }
}

/// One (point, seed) run.
pub struct Run {
    pub point: usize,
    pub row: EvalRow,
    pub report: Report,
    pub margin: MarginHist,
}

/// A row of `eval.csv`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub label: String,
    pub x: f64,
    pub policy: String,
    pub scenario: String,
    /// Service-estimate model the policies saw.
    pub estimate: String,
    pub seed: u64,
    pub finished: u64,
    pub miss_rate: f64,
    pub drop_rate: f64,
    pub goodput_per_s: f64,
    pub throughput_per_s: f64,
    /// Over all tasks, dropped ones at +infinity (see results::TAIL_NOTE).
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    /// Completed tasks only (labelled extras).
    pub p99_completed_us: f64,
    pub mean_latency_completed_us: f64,
    pub wcet_ratio: f64,
    pub burst_finished: u64,
    pub burst_miss_rate: f64,
    pub margin_median: f64,
    pub margin_p99: f64,
    pub near_miss_frac: f64,
    pub just_late_frac: f64,
}

/// A row of `summary.csv`: one point, mean and 95% half-width over seeds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PointRow {
    pub label: String,
    pub x: f64,
    pub policy: String,
    pub scenario: String,
    /// Service-estimate model of the point's runs (empty in summaries written before
    /// estimates existed: those runs used exact service times).
    #[serde(default)]
    pub estimate: String,
    pub seeds: usize,
    pub miss_rate: f64,
    pub miss_rate_ci95: f64,
    pub goodput_per_s: f64,
    pub goodput_ci95: f64,
    pub p99_us: f64,
    pub p99_ci95: f64,
    /// Over all tasks, dropped ones at +infinity: infinite when any seed's is.
    pub p999_us: f64,
    pub p999_ci95: f64,
    /// Dropped tasks / finished, mean over seeds.
    #[serde(default)]
    pub drop_rate: f64,
    pub burst_miss_rate: f64,
    pub burst_miss_rate_ci95: f64,
    /// Pooled over seeds.
    pub margin_median: f64,
    pub margin_p99: f64,
    pub near_miss_frac: f64,
    pub just_late_frac: f64,
}

/// Runs every point on every seed with the size's threads; `learners` maps learner keys used
/// as `Point::policy` to their factories (in eval mode), other specs go to the registry.
pub fn evaluate_points(
    ctx: &Ctx,
    size: &Size,
    points: &[Point],
    learners: &HashMap<String, Arc<dyn PolicyFactory>>,
) -> Result<Vec<Run>> {
    let mut factories: BTreeMap<String, Arc<dyn PolicyFactory>> = BTreeMap::new();
    for p in points {
        if factories.contains_key(&p.policy) {
            continue;
        }
        let f = if let Some(f) = learners.get(&p.policy) {
            f.clone()
        } else {
            registry::make_factory(&p.policy, &ctx.agents)
                .with_context(|| format!("policy {}", p.policy))?
        };
        factories.insert(p.policy.clone(), f);
    }
    let seeds: Vec<u64> = (0..size.eval_seeds as u64)
        .map(|i| EVAL_SEED_BASE + i)
        .collect();
    let jobs: Vec<(usize, u64)> = (0..points.len())
        .flat_map(|p| seeds.iter().map(move |&s| (p, s)))
        .collect();
    let pb = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let pb = ProgressBar::new(jobs.len() as u64);
        pb.set_style(
            ProgressStyle::with_template("  evaluating [{elapsed_precise}] {bar:30} {pos}/{len}")
                .expect("valid template"),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<Result<Run>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..size.threads.min(jobs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(p, seed)) = jobs.get(i) else { break };
                let point = &points[p];
                let r = run_point(point, factories[&point.policy].clone(), seed).map(
                    |(row, report, margin)| Run {
                        point: p,
                        row,
                        report,
                        margin,
                    },
                );
                pb.inc(1);
                out.lock().expect("results lock")[i] = Some(r);
            });
        }
    });
    pb.finish_and_clear();
    out.into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// One run of a point on one seed, with the margin tap on the env's transport.
pub fn run_point(
    point: &Point,
    factory: Arc<dyn PolicyFactory>,
    seed: u64,
) -> Result<(EvalRow, Report, MarginHist)> {
    let sc = &point.scenario;
    let measured = sc.warmup_tasks..sc.limits.tasks.unwrap_or(u64::MAX);
    let mut sim = RackSim::new(sc.clone(), seed)
        .with_context(|| format!("scenario {}", point.scenario_spec))?;
    let mut inner = Loopback::new(factory, seed);
    let mut tap = Tap::new(&mut inner, measured);
    let report = rack_sim::run_env_loop(
        &mut sim,
        &mut tap,
        &format!("exp-{}-{seed}", point.label),
        1,
    )
    .with_context(|| format!("{} on {} seed {seed}", point.label, point.scenario_spec))?;
    let case = EvalCase::new(&point.label, &point.policy, &point.scenario_spec);
    let margin = std::mem::take(&mut tap.hist);
    Ok((EvalRow::from_report(&case, seed, &report), report, margin))
}

fn run_rows(points: &[Point], runs: &[Run]) -> Vec<RunRow> {
    runs.iter()
        .map(|r| {
            let p = &points[r.point];
            let burst = r.report.per_class.get(&1);
            RunRow {
                label: p.label.clone(),
                x: p.x,
                policy: p.policy.clone(),
                scenario: p.scenario_spec.clone(),
                estimate: r.row.estimate.clone(),
                seed: r.row.seed,
                finished: r.row.finished,
                miss_rate: r.row.miss_rate,
                drop_rate: r.row.drop_rate,
                goodput_per_s: r.row.goodput_per_s,
                throughput_per_s: r.row.throughput_per_s,
                p50_us: r.row.p50_us,
                p99_us: r.row.p99_us,
                p999_us: r.row.p999_us,
                p99_completed_us: r.row.p99_completed_us,
                mean_latency_completed_us: r.row.mean_latency_completed_us,
                wcet_ratio: r.row.wcet_ratio,
                burst_finished: burst.map_or(0, |c| c.finished),
                burst_miss_rate: r.row.burst_miss_rate,
                margin_median: r.margin.quantile(0.5),
                margin_p99: r.margin.quantile(0.99),
                near_miss_frac: r.margin.near_miss(),
                just_late_frac: r.margin.just_late(),
            }
        })
        .collect()
}

/// Summarises runs per point (in point order).
pub fn point_rows(points: &[Point], runs: &[Run]) -> Vec<PointRow> {
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let g: Vec<&Run> = runs.iter().filter(|r| r.point == i).collect();
            let ci = |f: &dyn Fn(&Run) -> f64| {
                MeanCi::of(
                    &g.iter()
                        .map(|r| f(r))
                        .filter(|v| v.is_finite())
                        .collect::<Vec<_>>(),
                )
            };
            // Tails: an infinite seed makes the point infinite (filtering it would hide it).
            let tail = |f: &dyn Fn(&Run) -> f64| {
                results::tail_ci(&g.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let (miss, good, p99, p999, burst) = (
                ci(&|r| r.row.miss_rate),
                ci(&|r| r.row.goodput_per_s),
                tail(&|r| r.row.p99_us),
                tail(&|r| r.row.p999_us),
                ci(&|r| r.row.burst_miss_rate),
            );
            let mut m = MarginHist::new();
            for r in &g {
                m.merge(&r.margin);
            }
            PointRow {
                label: p.label.clone(),
                x: p.x,
                policy: p.policy.clone(),
                scenario: p.scenario_spec.clone(),
                estimate: p.scenario.estimate.label(),
                seeds: g.len(),
                miss_rate: miss.mean,
                miss_rate_ci95: miss.half_width,
                goodput_per_s: good.mean,
                goodput_ci95: good.half_width,
                p99_us: p99.mean,
                p99_ci95: p99.half_width,
                p999_us: p999.mean,
                p999_ci95: p999.half_width,
                drop_rate: ci(&|r| r.row.drop_rate).mean,
                burst_miss_rate: burst.mean,
                burst_miss_rate_ci95: burst.half_width,
                margin_median: m.quantile(0.5),
                margin_p99: m.quantile(0.99),
                near_miss_frac: m.near_miss(),
                just_late_frac: m.just_late(),
            }
        })
        .collect()
}

/// Which metric of a [`PointRow`] a sweep figure shows.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    MissPct,
    Goodput,
    P99,
    P999,
    BurstMissPct,
}

impl Metric {
    pub fn of(self, r: &PointRow) -> (f64, f64) {
        match self {
            Metric::MissPct => (r.miss_rate * 100.0, r.miss_rate_ci95 * 100.0),
            Metric::Goodput => (r.goodput_per_s, r.goodput_ci95),
            Metric::P99 => (r.p99_us, r.p99_ci95),
            Metric::P999 => (r.p999_us, r.p999_ci95),
            Metric::BurstMissPct => (r.burst_miss_rate * 100.0, r.burst_miss_rate_ci95 * 100.0),
        }
    }

    pub fn axis(self) -> &'static str {
        match self {
            Metric::MissPct => "deadline miss rate (%)",
            Metric::Goodput => "goodput (on-time completions / s)",
            Metric::P99 => "p99 latency over all tasks (us; no point: > 1% dropped)",
            Metric::P999 => "p99.9 latency over all tasks (us; no point: > 0.1% dropped)",
            Metric::BurstMissPct => "micro-burst miss rate (%)",
        }
    }

    pub fn cell(self, r: &PointRow) -> String {
        let (m, h) = self.of(r);
        match self {
            Metric::MissPct | Metric::BurstMissPct => format!("{m:.3}% ± {h:.3}"),
            Metric::Goodput => format!("{m:.0} ± {h:.0}"),
            Metric::P99 | Metric::P999 => results::fmt_tail(m, h),
        }
    }
}

/// Labels in first-seen order.
fn labels(rows: &[PointRow]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if !v.contains(&r.label) {
            v.push(r.label.clone());
        }
    }
    v
}

/// (x, y, 95% interval) of a chart line.
type ChartPoint = (f64, f64, Option<(f64, f64)>);

/// A metric against the swept parameter, one line per label, 95% error bars.
pub fn sweep_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    rows: &[PointRow],
    metric: Metric,
    x_log: bool,
    y_log: bool,
) -> Result<()> {
    let series: Vec<Series> = labels(rows)
        .into_iter()
        .map(|l| {
            let mut pts: Vec<ChartPoint> = rows
                .iter()
                .filter(|r| r.label == l)
                .map(|r| {
                    let (m, h) = metric.of(r);
                    // A log axis cannot show an interval reaching 0: no bar then.
                    let ci = (!y_log || m - h > 0.0).then_some((m - h, m + h));
                    (r.x, m, ci)
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                label: l,
                points: pts,
            }
        })
        .collect();
    let estimates = results::distinct(rows.iter().map(|r| r.estimate.as_str()));
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: if estimates.is_empty() {
                x_label.into()
            } else {
                format!("{x_label}; service estimates: {estimates}")
            },
            y_label: metric.axis().into(),
            x_log,
            y_log,
        },
        &series,
    )?;
    Ok(())
}

/// The figures of the sweep experiments, from their summary rows (also used by `--replot`).
pub fn sweep_figures(name: &str, out: &Path, rows: &[PointRow]) -> Result<()> {
    let charts: &[(&str, &str, &str, Metric, bool)] = match name {
        "heavy-tail" => &[
            (
                "miss_vs_alpha.png",
                "Deadline miss rate against Pareto alpha (16 fast nodes)",
                "Pareto shape alpha (smaller = heavier tail)",
                Metric::MissPct,
                false,
            ),
            (
                "p99_vs_alpha.png",
                "p99 latency against Pareto alpha (16 fast nodes)",
                "Pareto shape alpha (smaller = heavier tail)",
                Metric::P99,
                false,
            ),
        ],
        "staleness" => &[
            (
                "goodput_vs_heartbeat.png",
                "Goodput against heartbeat interval (16 fast nodes)",
                "heartbeat interval T_hb (us, log scale)",
                Metric::Goodput,
                true,
            ),
            (
                "miss_vs_heartbeat.png",
                "Miss rate against heartbeat interval (16 fast nodes)",
                "heartbeat interval T_hb (us, log scale)",
                Metric::MissPct,
                true,
            ),
        ],
        "load" => &[
            (
                "p999_vs_load.png",
                "p99.9 latency against load (16 fast nodes, Pareto 1.5)",
                "load rho",
                Metric::P999,
                false,
            ),
            (
                "miss_vs_load.png",
                "Miss rate against load (16 fast nodes, Pareto 1.5)",
                "load rho",
                Metric::MissPct,
                false,
            ),
        ],
        _ => &[],
    };
    for &(file, title, x_label, metric, x_log) in charts {
        sweep_chart(&out.join(file), title, x_label, rows, metric, x_log, false)?;
    }
    Ok(())
}

/// Redraws the sweep figures of an existing results folder from its `summary.csv`.
pub fn replot(name: &str, out: &Path) -> Result<()> {
    let path = out.join("summary.csv");
    let mut r = csv::Reader::from_path(&path).with_context(|| format!("{}", path.display()))?;
    let rows: Vec<PointRow> = r
        .deserialize()
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}", path.display()))?;
    sweep_figures(name, out, &rows)
}

/// Markdown pivot: one row per x, one column per label, `metric` cells.
pub fn pivot_table(x_name: &str, rows: &[PointRow], metric: Metric) -> String {
    let ls = labels(rows);
    let mut xs: Vec<f64> = Vec::new();
    for r in rows {
        if !xs.iter().any(|x| x.total_cmp(&r.x).is_eq()) {
            xs.push(r.x);
        }
    }
    let mut s = format!("| {x_name} | {} |\n|---|", ls.join(" | "));
    s += &"---:|".repeat(ls.len());
    s.push('\n');
    for x in xs {
        let _ = write!(s, "| {x} |");
        for l in &ls {
            let cell = rows
                .iter()
                .find(|r| &r.label == l && r.x.total_cmp(&x).is_eq())
                .map_or("-".to_string(), |r| metric.cell(r));
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    s
}

/// Learning curves (training miss rate, moving average) of the learners.
fn curves_plot(path: &Path, title: &str, learners: &[(String, &Trained)]) -> Result<()> {
    let v: Vec<(String, &[CurvePoint])> = learners
        .iter()
        .filter(|(_, t)| !t.curve.is_empty())
        .map(|(l, t)| (l.clone(), t.curve.as_slice()))
        .collect();
    if !v.is_empty() {
        results::learning_curve_plot(path, title, &v, 5)?;
    }
    Ok(())
}

/// CDF of latency / relative deadline per label (pooled over seeds).
fn margin_plot(
    path: &Path,
    title: &str,
    hists: &[(String, MarginHist)],
    points: &[Point],
) -> Result<()> {
    let estimates: Vec<String> = points.iter().map(|p| p.scenario.estimate.label()).collect();
    let series: Vec<Series> = hists
        .iter()
        .filter(|(_, h)| h.completed > 0)
        .map(|(l, h)| Series {
            label: l.clone(),
            points: h
                .cdf_points()
                .into_iter()
                .map(|(x, y)| (x, y, None))
                .collect(),
        })
        .collect();
    if series.is_empty() {
        return Ok(());
    }
    line_chart(
        path,
        &Chart {
            title: title.into(),
            x_label: format!(
                "latency / relative deadline (1 = deadline); service estimates: {}",
                results::distinct(estimates.iter().map(String::as_str))
            ),
            y_label: "fraction of tasks (dropped = never complete)".into(),
            x_log: false,
            y_log: false,
        },
        &series,
    )?;
    Ok(())
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
    results::write_csv(&out.join("eval.csv"), &run_rows(points, runs))?;
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

fn hetero(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let base = with(
        "hetero",
        &format!("tasks={},warmup={}", size.tasks, size.warmup),
    );
    let fcfs = with(&base, "discipline=fcfs");
    let ideal = with(
        "ideal",
        &format!(
            "tasks={},warmup={},discipline=fcfs",
            size.tasks, size.warmup
        ),
    );
    let ms = ctx.train(size, "malcolm-strict", &ctx.agents, &base, size.seed)?;
    let mal = ctx.train(size, "malcolm", &ctx.agents, &fcfs, size.seed)?;
    save_checkpoint(out, "malcolm-strict", &ms);
    save_checkpoint(out, "malcolm", &mal);
    let learners: HashMap<String, Arc<dyn PolicyFactory>> = [
        ("learner:ms".to_string(), ms.factory.clone()),
        ("learner:malcolm".to_string(), mal.factory.clone()),
    ]
    .into();
    let nan = f64::NAN;
    let points = vec![
        Point::new(&format!("{PO2_FCFS} (2 fast : 3 slow)"), "po2", &fcfs, nan)?,
        Point::new(&format!("{PO2_FCFS}, ideal (5 fast)"), "po2", &ideal, nan)?,
        Point::new(MS, "learner:ms", &base, nan)?,
        Point::new(MALCOLM, "learner:malcolm", &fcfs, nan)?,
        Point::new("Po2 + EDF", "po2", &base, nan)?,
        Point::new("JSQ (EDF)", "jsq", &base, nan)?,
        Point::new("Slack-greedy (EDF)", "slack-greedy", &base, nan)?,
        Point::new("TOD-N (EDF)", "tod-n", &base, nan)?,
    ];
    write_config(ctx, "hetero", size, out, &points, serde_json::json!({}))?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    finish(out, &points, &runs)?;
    // The classic summary (results::SummaryRow) so job::ratios applies.
    let eval_rows: Vec<EvalRow> = runs.iter().map(|r| r.row.clone()).collect();
    let summary: Vec<SummaryRow> = results::summarise(&eval_rows);
    let first_seed: Vec<(String, &Report)> = runs
        .iter()
        .map(|r| (r.row.label.clone(), &r.report))
        .collect();
    results::latency_cdf_plot(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF, hetero rack (held-out seed {EVAL_SEED_BASE})"),
        &first_seed,
    )?;
    curves_plot(
        &out.join("learning_curves.png"),
        "Training on the hetero rack: miss rate per episode",
        &[
            ("Malcolm-Strict".to_string(), &ms),
            ("Malcolm".to_string(), &mal),
        ],
    )?;
    let hists: Vec<(String, MarginHist)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut h = MarginHist::new();
            for r in runs.iter().filter(|r| r.point == i) {
                h.merge(&r.margin);
            }
            (p.label.clone(), h)
        })
        .collect();
    margin_plot(
        &out.join("margin_cdf.png"),
        "Latency / relative deadline, hetero rack (pooled seeds)",
        &hists,
        &points,
    )?;
    let mut md = header(
        "hetero",
        size,
        out,
        ctx,
        &points,
        "The design's chapter 5.4 experiment 1-2: 2 fast : 3 slow nodes (fast = speed 1.0 x 4 \
         cores, slow = speed 0.2 x 16 cores). Po2 + FCFS on that rack, Po2 + FCFS on 5 fast nodes \
         offered the same task rate (ideal), Malcolm-Strict (IQN + CVaR + barrier reward, EDF \
         nodes), original Malcolm (FCFS nodes), and references.",
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\n";
    md += &results::markdown_table(&summary);
    md += "\n";
    md += &job::ratios(&summary);
    let get = |l: &str| summary.iter().find(|r| r.label.starts_with(l));
    if let (Some(m), Some(p), Some(i)) = (
        get("Malcolm-Strict"),
        get("Po2 + FCFS (2"),
        get("Po2 + FCFS, ideal"),
    ) {
        let ratio = m.goodput_per_s / p.goodput_per_s;
        let frac = m.goodput_per_s / i.goodput_per_s;
        let _ = writeln!(
            md,
            "\nClaims: Malcolm-Strict far ahead of Po2 + FCFS in goodput ({ratio:.2}x; design 4.64x): \
             {}; a large fraction (>= 50%) of the ideal rack's goodput ({:.1}%; design 75.4%): {}; \
             miss rate below Po2 + FCFS's ({:.3}% vs {:.3}%): {}.",
            verdict(ratio > 1.5),
            frac * 100.0,
            verdict(frac >= 0.5),
            m.miss_rate * 100.0,
            p.miss_rate * 100.0,
            verdict(m.miss_rate < p.miss_rate)
        );
    }
    md += "\nFigures: `latency_cdf.png` (first held-out seed), `margin_cdf.png`, \
           `learning_curves.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}

fn kind_name(k: RewardKindName) -> &'static str {
    match k {
        RewardKindName::Barrier => "barrier",
        RewardKindName::Linear => "linear",
        RewardKindName::Step => "step",
    }
}

/// A row of `learners.csv` in barrier-ablation (and cvar).
#[derive(Debug, Clone, serde::Serialize)]
struct LearnerRow {
    variant: String,
    train_seed: usize,
    episodes: usize,
    decisions: u64,
    late_training_miss_rate: f64,
    eval_miss_rate: f64,
    eval_goodput_per_s: f64,
    eval_p99_us: f64,
}

/// A row of `variants.csv`: a variant over its training seeds.
#[derive(Debug, Clone, serde::Serialize)]
struct VariantRow {
    variant: String,
    learners: usize,
    miss_rate: f64,
    miss_rate_ci95: f64,
    goodput_per_s: f64,
    goodput_ci95: f64,
    p99_us: f64,
    p99_ci95: f64,
    late_training_miss_mean: f64,
    late_training_miss_std: f64,
    margin_median: f64,
    margin_p99: f64,
    near_miss_frac: f64,
    just_late_frac: f64,
}

fn barrier_ablation(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let base = with(
        "hetero",
        &format!("tasks={},warmup={}", size.tasks, size.warmup),
    );
    let kinds = [
        RewardKindName::Barrier,
        RewardKindName::Linear,
        RewardKindName::Step,
    ];
    let mut trained: Vec<(RewardKindName, usize, Trained)> = Vec::new();
    for k in kinds {
        for s in 0..size.train_seeds {
            let mut a = ctx.agents.clone();
            a.iqn.reward.kind = k;
            a.iqn.seed = ctx.agents.iqn.seed + s as u64;
            let t = ctx.train(
                size,
                "malcolm-strict",
                &a,
                &base,
                size.seed + 7_919 * s as u64,
            )?;
            save_checkpoint(out, &format!("{}-seed{s}", kind_name(k)), &t);
            trained.push((k, s, t));
        }
    }
    let mut learners: HashMap<String, Arc<dyn PolicyFactory>> = HashMap::new();
    let mut points = Vec::new();
    for (k, s, t) in &trained {
        let key = format!("learner:{}-{s}", kind_name(*k));
        learners.insert(key.clone(), t.factory.clone());
        points.push(Point::new(
            &format!("{} reward, training seed {s}", kind_name(*k)),
            &key,
            &base,
            *s as f64,
        )?);
    }
    write_config(
        ctx,
        "barrier-ablation",
        size,
        out,
        &points,
        serde_json::json!({"kinds": ["barrier", "linear", "step"], "train_seeds": size.train_seeds,
            "reward": ctx.agents.iqn.reward}),
    )?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    let rows = finish(out, &points, &runs)?;
    // Per learner, then per kind over learners.
    let mut lrows = Vec::new();
    let mut vrows = Vec::new();
    let mut kind_hists = Vec::new();
    let mut agg_series = Vec::new();
    for k in kinds {
        let name = kind_name(k);
        let mut hist = MarginHist::new();
        let mut late = Vec::new();
        let (mut miss, mut good, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        let mut curves_k = Vec::new();
        for (i, (kk, s, t)) in trained.iter().enumerate() {
            if *kk != k {
                continue;
            }
            for r in runs.iter().filter(|r| r.point == i) {
                hist.merge(&r.margin);
            }
            let c: Vec<(f64, f64)> = t
                .curve
                .iter()
                .map(|p| (p.decisions as f64, p.miss_rate * 100.0))
                .collect();
            let lm = curves::late_mean(&c, 0.25);
            late.push(lm);
            curves_k.push(c);
            let pr = &rows[i];
            miss.push(pr.miss_rate);
            good.push(pr.goodput_per_s);
            p99.push(pr.p99_us);
            lrows.push(LearnerRow {
                variant: name.into(),
                train_seed: *s,
                episodes: t.curve.len(),
                decisions: t.curve.last().map_or(0, |p| p.decisions),
                late_training_miss_rate: lm / 100.0,
                eval_miss_rate: pr.miss_rate,
                eval_goodput_per_s: pr.goodput_per_s,
                eval_p99_us: pr.p99_us,
            });
        }
        let (m, g, p) = (MeanCi::of(&miss), MeanCi::of(&good), results::tail_ci(&p99));
        let late_f: Vec<f64> = late.iter().copied().filter(|v| v.is_finite()).collect();
        vrows.push(VariantRow {
            variant: name.into(),
            learners: miss.len(),
            miss_rate: m.mean,
            miss_rate_ci95: m.half_width,
            goodput_per_s: g.mean,
            goodput_ci95: g.half_width,
            p99_us: p.mean,
            p99_ci95: p.half_width,
            late_training_miss_mean: MeanCi::of(&late_f).mean / 100.0,
            late_training_miss_std: curves::std_dev(&late_f) / 100.0,
            margin_median: hist.quantile(0.5),
            margin_p99: hist.quantile(0.99),
            near_miss_frac: hist.near_miss(),
            just_late_frac: hist.just_late(),
        });
        let bins = curves::aggregate(&curves_k, if size.quick { 5 } else { 12 });
        results::write_csv(&out.join(format!("learning_curve_{name}.csv")), &bins)?;
        agg_series.push(Series {
            label: format!("{name} reward ({} seeds)", curves_k.len()),
            points: bins
                .iter()
                .map(|b| (b.x, b.mean, Some((b.mean - b.ci95, b.mean + b.ci95))))
                .collect(),
        });
        kind_hists.push((format!("{name} reward"), hist));
    }
    results::write_csv(&out.join("learners.csv"), &lrows)?;
    results::write_csv(&out.join("variants.csv"), &vrows)?;
    #[derive(serde::Serialize)]
    struct MarginRow<'a> {
        variant: &'a str,
        ratio_upper: f64,
        cdf: f64,
    }
    let margin_rows: Vec<MarginRow> = kind_hists
        .iter()
        .flat_map(|(l, h)| {
            h.cdf_points().into_iter().map(move |(x, y)| MarginRow {
                variant: l,
                ratio_upper: x,
                cdf: y,
            })
        })
        .collect();
    results::write_csv(&out.join("margin_cdf.csv"), &margin_rows)?;
    margin_plot(
        &out.join("margin_cdf.png"),
        "Safety margin: latency / relative deadline (held-out seeds, pooled)",
        &kind_hists,
        &points,
    )?;
    if agg_series.iter().any(|s| !s.points.is_empty()) {
        line_chart(
            &out.join("learning_curves.png"),
            &Chart {
                title: "Training miss rate: mean over training seeds, 95% bars".into(),
                x_label: "decisions served during training".into(),
                y_label: "training-episode miss rate (%)".into(),
                x_log: false,
                y_log: false,
            },
            &agg_series,
        )?;
    }
    let mut md = header(
        "barrier-ablation",
        size,
        out,
        ctx,
        &points,
        "The design's chapter 5.5 ablation: Malcolm-Strict trained with the barrier reward, a \
         linear penalty (-latency, scaled) and a step reward (+1 on time, -100 on a miss), each \
         from several training seeds, on the `hetero` rack; evaluated greedily on held-out seeds.",
    );
    for (k, s, t) in &trained {
        md += &learner_line(&format!("{} seed {s}", kind_name(*k)), t);
    }
    md += "\n| reward | learners | miss rate | goodput (on-time/s) | p99 (us) | late-training miss (mean, std over seeds) | median latency/deadline | p99 latency/deadline | on time in last 10% of budget | late by < 10% |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for v in &vrows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3}% ± {:.3} | {:.0} ± {:.0} | {} | {:.2}%, {:.2} | {:.2} | {:.2} | {:.2}% | {:.2}% |",
            v.variant,
            v.learners,
            v.miss_rate * 100.0,
            v.miss_rate_ci95 * 100.0,
            v.goodput_per_s,
            v.goodput_ci95,
            results::fmt_tail(v.p99_us, v.p99_ci95),
            v.late_training_miss_mean * 100.0,
            v.late_training_miss_std * 100.0,
            v.margin_median,
            v.margin_p99,
            v.near_miss_frac * 100.0,
            v.just_late_frac * 100.0
        );
    }
    md += "\n± is the 95% interval over the training seeds (each learner's mean over the held-out seeds).\n";
    if let [b, l, s] = &vrows[..] {
        let _ = writeln!(
            md,
            "\nClaims: barrier misses fewer deadlines than linear ({:.3}% vs {:.3}%; design 0.02% vs 12.5%): {}; \
             than step ({:.3}% vs {:.3}%; design 8.3%): {}; linear leaves more tasks just before or \
             after the deadline than barrier ({:.2}% vs {:.2}%): {}; step trains less stably than barrier \
             (late-training miss std {:.2} vs {:.2} points): {}.",
            b.miss_rate * 100.0,
            l.miss_rate * 100.0,
            verdict(b.miss_rate < l.miss_rate),
            b.miss_rate * 100.0,
            s.miss_rate * 100.0,
            verdict(b.miss_rate < s.miss_rate),
            (l.near_miss_frac + l.just_late_frac) * 100.0,
            (b.near_miss_frac + b.just_late_frac) * 100.0,
            verdict(l.near_miss_frac + l.just_late_frac > b.near_miss_frac + b.just_late_frac),
            s.late_training_miss_std * 100.0,
            b.late_training_miss_std * 100.0,
            verdict(s.late_training_miss_std > b.late_training_miss_std)
        );
    }
    md += "\nFigures: `margin_cdf.png`, `learning_curves.png`. Data: `eval.csv`, `summary.csv` \
           (per learner), `learners.csv`, `variants.csv`, `margin_cdf.csv`, \
           `learning_curve_<kind>.csv`.\n";
    write_md(out, md, t0)
}

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

fn heavy_tail(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let sz = format!("tasks={},warmup={}", size.tasks, size.warmup);
    let at = |a: f64, fcfs: bool| {
        with(
            "heavy-tail",
            &format!(
                "alpha={a},{sz}{}",
                if fcfs { ",discipline=fcfs" } else { "" }
            ),
        )
    };
    let (ms, mal, learners) = train_ms_and_malcolm(
        ctx,
        size,
        out,
        &at(HEAVY_TAIL_TRAIN_ALPHA, false),
        &at(HEAVY_TAIL_TRAIN_ALPHA, true),
    )?;
    let mut points = Vec::new();
    for &a in ALPHAS {
        points.push(Point::new(MS, "learner:ms", &at(a, false), a)?);
        points.push(Point::new(MALCOLM, "learner:malcolm", &at(a, true), a)?);
        points.push(Point::new(PO2_FCFS, "po2", &at(a, true), a)?);
    }
    let rows = run_sweep(
        ctx,
        "heavy-tail",
        size,
        out,
        &points,
        &learners,
        serde_json::json!({"alphas": ALPHAS, "train_alpha": HEAVY_TAIL_TRAIN_ALPHA}),
    )?;
    let mut md = header(
        "heavy-tail",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 5.4 experiment 2: the `heavy-tail` rack (16 fast nodes, bounded \
             Pareto service with x_m = 10 us, tight deadlines) at alpha 2.5 .. 1.1. Each learner is \
             trained once, at alpha = {HEAVY_TAIL_TRAIN_ALPHA}, and evaluated at every alpha \
             (Malcolm with FCFS nodes, Malcolm-Strict with EDF nodes, power-of-2 with FCFS nodes)."
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\nMiss rate:\n\n";
    md += &pivot_table("alpha", &rows, Metric::MissPct);
    md += "\np99 latency (us):\n\n";
    md += &pivot_table("alpha", &rows, Metric::P99);
    let (lo, hi) = (ALPHAS[0], ALPHAS[ALPHAS.len() - 1]);
    if let (Some(m0), Some(m1), Some(s0), Some(s1)) = (
        find(&rows, MALCOLM, lo),
        find(&rows, MALCOLM, hi),
        find(&rows, MS, lo),
        find(&rows, MS, hi),
    ) {
        let dm = (m1.miss_rate - m0.miss_rate) * 100.0;
        let ds = (s1.miss_rate - s0.miss_rate) * 100.0;
        let _ = writeln!(
            md,
            "\nClaim: Malcolm's miss rate rises with heavier tails faster than Malcolm-Strict's \
             (alpha {lo} -> {hi}: Malcolm {:+.2} points, Malcolm-Strict {:+.2} points): {}; \
             Malcolm-Strict below Malcolm at alpha {hi} ({:.3}% vs {:.3}%): {}.",
            dm,
            ds,
            verdict(dm > ds),
            s1.miss_rate * 100.0,
            m1.miss_rate * 100.0,
            verdict(s1.miss_rate < m1.miss_rate)
        );
    }
    md += "\nFigures: `miss_vs_alpha.png`, `p99_vs_alpha.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}

fn staleness(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let sz = format!("tasks={},warmup={}", size.tasks, size.warmup);
    let at = |hb: u64| with("staleness", &format!("t_hb_us={hb},{sz}"));
    let ms = ctx.train(
        size,
        "malcolm-strict",
        &ctx.agents,
        &at(STALENESS_TRAIN_HB_US),
        size.seed,
    )?;
    save_checkpoint(out, "malcolm-strict", &ms);
    let learners: HashMap<String, Arc<dyn PolicyFactory>> =
        [("learner:ms".to_string(), ms.factory.clone())].into();
    let mut points = Vec::new();
    for &hb in HEARTBEATS_US {
        let x = hb as f64;
        points.push(Point::new(MS, "learner:ms", &at(hb), x)?);
        points.push(Point::new(
            "JSQ on stale heartbeats (EDF)",
            "jsq-stale",
            &at(hb),
            x,
        )?);
        points.push(Point::new(
            "JSQ with fresh probes (EDF)",
            "jsq",
            &at(hb),
            x,
        )?);
        points.push(Point::new(
            "Slack-greedy, stale view (EDF)",
            "slack-greedy",
            &at(hb),
            x,
        )?);
    }
    let rows = run_sweep(
        ctx,
        "staleness",
        size,
        out,
        &points,
        &learners,
        serde_json::json!({"heartbeats_us": HEARTBEATS_US, "train_t_hb_us": STALENESS_TRAIN_HB_US}),
    )?;
    let mut md = header(
        "staleness",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 5.4 experiment 3: the `staleness` rack (16 fast nodes) with \
             heartbeats every 10 .. 1000 us. Malcolm-Strict is trained once at T_hb = \
             {STALENESS_TRAIN_HB_US} us and evaluated at every interval. \"JSQ on stale \
             heartbeats\" joins the shortest queue of the origin's Global State Table (no probes: \
             the herd-prone JSQ of the design); \"JSQ with fresh probes\" is the `jsq` baseline, \
             which pays a probe round trip per task and does not depend on T_hb."
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += "\nGoodput (on-time completions / s):\n\n";
    md += &pivot_table("T_hb (us)", &rows, Metric::Goodput);
    md += "\nMiss rate:\n\n";
    md += &pivot_table("T_hb (us)", &rows, Metric::MissPct);
    let (lo, hi) = (
        HEARTBEATS_US[0] as f64,
        HEARTBEATS_US[HEARTBEATS_US.len() - 1] as f64,
    );
    let drop = |l: &str| -> Option<f64> {
        let (a, b) = (find(&rows, l, lo)?, find(&rows, l, hi)?);
        Some(100.0 * (a.goodput_per_s - b.goodput_per_s) / a.goodput_per_s)
    };
    if let (Some(dm), Some(dj)) = (drop(MS), drop("JSQ on stale heartbeats (EDF)")) {
        let _ = writeln!(
            md,
            "\nClaim: graceful degradation with staleness: from T_hb {lo} to {hi} us Malcolm-Strict \
             loses {dm:.1}% of its goodput, JSQ on stale heartbeats {dj:.1}%; Malcolm-Strict \
             degrades less: {}.",
            verdict(dm < dj)
        );
    }
    md += "\nFigures: `goodput_vs_heartbeat.png`, `miss_vs_heartbeat.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}

fn load(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let sz = format!("tasks={},warmup={}", size.tasks, size.warmup);
    let at = |rho: f64, fcfs: bool| {
        with(
            "homogeneous-16",
            &format!(
                "rho={rho},{sz}{}",
                if fcfs { ",discipline=fcfs" } else { "" }
            ),
        )
    };
    let (ms, mal, learners) = train_ms_and_malcolm(
        ctx,
        size,
        out,
        &at(LOAD_TRAIN_RHO, false),
        &at(LOAD_TRAIN_RHO, true),
    )?;
    let mut points = Vec::new();
    for &rho in LOADS {
        points.push(Point::new(MS, "learner:ms", &at(rho, false), rho)?);
        points.push(Point::new(MALCOLM, "learner:malcolm", &at(rho, true), rho)?);
        points.push(Point::new(PO2_FCFS, "po2", &at(rho, true), rho)?);
        points.push(Point::new("JSQ (EDF)", "jsq", &at(rho, false), rho)?);
    }
    let rows = run_sweep(
        ctx,
        "load",
        size,
        out,
        &points,
        &learners,
        serde_json::json!({"loads": LOADS, "train_rho": LOAD_TRAIN_RHO}),
    )?;
    let mut md = header(
        "load",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 6.5 experiment A: `homogeneous-16` (Poisson arrivals, bounded \
             Pareto alpha 1.5 service, tight deadlines) at load 0.4 .. 0.95. The learners are \
             trained once at rho = {LOAD_TRAIN_RHO} and evaluated at every load."
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\np99.9 latency (us):\n\n";
    md += &pivot_table("rho", &rows, Metric::P999);
    md += "\nMiss rate:\n\n";
    md += &pivot_table("rho", &rows, Metric::MissPct);
    let high: Vec<f64> = LOADS.iter().copied().filter(|&r| r > 0.8).collect();
    let below = high
        .iter()
        .all(|&r| match (find(&rows, MS, r), find(&rows, MALCOLM, r)) {
            (Some(s), Some(m)) => s.p999_us < m.p999_us,
            _ => false,
        });
    let _ = writeln!(
        md,
        "\nClaim: at high load (rho > 0.8) Malcolm-Strict's p99.9 is below Malcolm's at every \
         point: {}.",
        verdict(below)
    );
    md += "\nFigures: `p999_vs_load.png`, `miss_vs_load.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}

/// The `microburst` evaluation scenario: the named one with the burst moved into the middle
/// of the measured window (the standard first burst comes at 50 ms, past a short episode),
/// keeping its 100 ms period, size and 10 us deadline. Returns it with its spec and the burst
/// instant.
pub fn microburst_eval_scenario(tasks: u64, warmup: u64) -> Result<(Scenario, String, f64)> {
    let spec = with("microburst", &format!("tasks={tasks},warmup={warmup}"));
    let mut s = rack_sim::by_name(&spec)?;
    let rate = s
        .arrival_rate_per_s()
        .context("microburst has a Poisson source")?;
    let mid_tasks = warmup as f64 + (tasks.saturating_sub(warmup)) as f64 / 2.0;
    let at_ns = (mid_tasks / rate * 1e9) as u64;
    let b = s
        .workload
        .bursts
        .as_mut()
        .context("microburst has bursts")?;
    b.first_at_ns = at_ns;
    let label = format!("{spec} (burst at {:.2} ms)", at_ns as f64 / 1e6);
    Ok((s, label, at_ns as f64 / 1e6))
}

/// Tasks per training episode of `microburst` so that the standard burst (first at 50 ms)
/// falls inside it: arrival rate x (first burst + 10%).
fn microburst_train_tasks(size: &Size) -> Result<u64> {
    if size.quick {
        return Ok(size.tasks);
    }
    let s = rack_sim::by_name("microburst")?;
    let rate = s.arrival_rate_per_s().context("Poisson source")?;
    let first = s.workload.bursts.as_ref().map_or(0, |b| b.first_at_ns) as f64 / 1e9;
    Ok(size.tasks.max((rate * first * 1.1).ceil() as u64))
}

fn microburst(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let train_tasks = microburst_train_tasks(size)?;
    let tsz = format!("tasks={train_tasks},warmup={}", size.warmup);
    let ms = ctx.train(
        size,
        "malcolm-strict",
        &ctx.agents,
        &with("microburst", &tsz),
        size.seed,
    )?;
    let mal = ctx.train(
        size,
        "malcolm",
        &ctx.agents,
        &with("microburst", &format!("{tsz},discipline=fcfs")),
        size.seed,
    )?;
    save_checkpoint(out, "malcolm-strict", &ms);
    save_checkpoint(out, "malcolm", &mal);
    let learners: HashMap<String, Arc<dyn PolicyFactory>> = [
        ("learner:ms".to_string(), ms.factory.clone()),
        ("learner:malcolm".to_string(), mal.factory.clone()),
    ]
    .into();
    let (edf, spec, burst_ms) = microburst_eval_scenario(size.tasks, size.warmup)?;
    let mut fcfs = edf.clone();
    fcfs.set("discipline", "fcfs")?;
    let fcfs_spec = format!("{spec} discipline=fcfs");
    let nan = f64::NAN;
    let mk = |label: &str, policy: &str, fc: bool| Point {
        label: label.into(),
        policy: policy.into(),
        scenario_spec: if fc { fcfs_spec.clone() } else { spec.clone() },
        scenario: if fc { fcfs.clone() } else { edf.clone() },
        x: nan,
    };
    let points = vec![
        mk(MS, "learner:ms", false),
        mk(MALCOLM, "learner:malcolm", true),
        mk(PO2_FCFS, "po2", true),
        mk("JSQ (EDF)", "jsq", false),
        mk("Slack-greedy (EDF)", "slack-greedy", false),
        mk("Po2 + EDF", "po2", false),
    ];
    write_config(
        ctx,
        "microburst",
        size,
        out,
        &points,
        serde_json::json!({"train_tasks": train_tasks, "burst_at_ms": burst_ms,
            "eval_scenario": serde_json::to_value(&edf)?}),
    )?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    let rows = finish(out, &points, &runs)?;
    let first_seed: Vec<(String, &Report)> = runs
        .iter()
        .map(|r| (r.row.label.clone(), &r.report))
        .collect();
    results::latency_cdf_plot(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF, microburst rack (held-out seed {EVAL_SEED_BASE})"),
        &first_seed,
    )?;
    let hists: Vec<(String, MarginHist)> = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut h = MarginHist::new();
            for r in runs.iter().filter(|r| r.point == i) {
                h.merge(&r.margin);
            }
            (p.label.clone(), h)
        })
        .collect();
    margin_plot(
        &out.join("margin_cdf.png"),
        "Latency / relative deadline, microburst rack (all classes, pooled seeds)",
        &hists,
        &points,
    )?;
    let mut md = header(
        "microburst",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 6.5 experiment B: `microburst` (16 fast nodes at rho 0.6 plus \
             bursts of 128 short tasks with 10 us deadlines every 100 ms). For evaluation the \
             burst is moved to {burst_ms:.2} ms, the middle of the measured window, so every \
             held-out episode holds one burst. The learners were trained on the standard \
             schedule with {train_tasks}-task episodes{}.",
            if size.quick {
                " (too short to contain the first burst at 50 ms: the quick learners never saw one)"
            } else {
                " (long enough to contain the first burst at 50 ms)"
            }
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\n| policy | burst-task miss rate | burst tasks per seed | overall miss rate | goodput (on-time/s) | p99 (us) |\n|---|---:|---:|---:|---:|---:|\n";
    for (i, r) in rows.iter().enumerate() {
        let bt: Vec<f64> = runs
            .iter()
            .filter(|x| x.point == i)
            .map(|x| {
                x.report
                    .per_class
                    .get(&1)
                    .map_or(0.0, |c| c.finished as f64)
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} |",
            r.label,
            Metric::BurstMissPct.cell(r),
            MeanCi::of(&bt).mean,
            Metric::MissPct.cell(r),
            Metric::Goodput.cell(r),
            Metric::P99.cell(r)
        );
    }
    if let (Some(s), Some(m)) = (find(&rows, MS, nan), find(&rows, MALCOLM, nan)) {
        let _ = writeln!(
            md,
            "\nClaim: Malcolm-Strict misses fewer burst tasks than Malcolm ({:.3}% vs {:.3}%): {}.",
            s.burst_miss_rate * 100.0,
            m.burst_miss_rate * 100.0,
            verdict(s.burst_miss_rate < m.burst_miss_rate)
        );
    }
    md += "\nFigures: `latency_cdf.png`, `margin_cdf.png`. Data: `eval.csv`, `summary.csv` \
           (`burst_miss_rate` is Report.per_class[1]).\n";
    write_md(out, md, t0)
}

fn cvar(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let base = with(
        "hetero",
        &format!("tasks={},warmup={}", size.tasks, size.warmup),
    );
    let mut trained = Vec::new();
    let mut learners: HashMap<String, Arc<dyn PolicyFactory>> = HashMap::new();
    let mut points = Vec::new();
    for &a in CVAR_ALPHAS {
        let mut ag = ctx.agents.clone();
        ag.iqn.cvar_alpha = a;
        let t = ctx.train(size, "malcolm-strict", &ag, &base, size.seed)?;
        save_checkpoint(out, &format!("cvar-{a}"), &t);
        let key = format!("learner:cvar-{a}");
        learners.insert(key.clone(), t.factory.clone());
        let label = if a >= 1.0 {
            format!("CVaR alpha {a} (risk-neutral)")
        } else {
            format!("CVaR alpha {a}")
        };
        points.push(Point::new(&label, &key, &base, a)?);
        trained.push((label, t));
    }
    write_config(
        ctx,
        "cvar",
        size,
        out,
        &points,
        serde_json::json!({"cvar_alphas": CVAR_ALPHAS}),
    )?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    let rows = finish(out, &points, &runs)?;
    let first_seed: Vec<(String, &Report)> = runs
        .iter()
        .map(|r| (r.row.label.clone(), &r.report))
        .collect();
    results::latency_cdf_plot(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF by CVaR alpha, hetero rack (seed {EVAL_SEED_BASE})"),
        &first_seed,
    )?;
    let refs: Vec<(String, &Trained)> = trained.iter().map(|(l, t)| (l.clone(), t)).collect();
    curves_plot(
        &out.join("learning_curves.png"),
        "Training by CVaR alpha: miss rate per episode",
        &refs,
    )?;
    let mut md = header(
        "cvar",
        size,
        out,
        ctx,
        &points,
        "Malcolm-Strict on the `hetero` rack with the CVaR level of its action choice at 0.05, \
         0.10 (default) and 1.0 (the mean: risk-neutral), same training budget and seed.",
    );
    for (l, t) in &trained {
        md += &learner_line(l, t);
    }
    md += "\n| CVaR alpha | miss rate | goodput (on-time/s) | p99 (us) | p99.9 (us) |\n|---|---:|---:|---:|---:|\n";
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.label,
            Metric::MissPct.cell(r),
            Metric::Goodput.cell(r),
            Metric::P99.cell(r),
            Metric::P999.cell(r)
        );
    }
    if let (Some(r10), Some(r100)) = (
        rows.iter().find(|r| (r.x - 0.10).abs() < 1e-9),
        rows.iter().find(|r| (r.x - 1.0).abs() < 1e-9),
    ) {
        let _ = writeln!(
            md,
            "\nClaim: risk-averse (alpha 0.10) vs risk-neutral (1.0): p99.9 {:.1} vs {:.1} us, miss rate \
             {:.3}% vs {:.3}%; lower tail with CVaR: {}.",
            r10.p999_us,
            r100.p999_us,
            r10.miss_rate * 100.0,
            r100.miss_rate * 100.0,
            verdict(r10.p999_us < r100.p999_us)
        );
    }
    md += "\nFigures: `latency_cdf.png`, `learning_curves.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
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
