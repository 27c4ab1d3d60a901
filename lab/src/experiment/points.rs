//! One evaluated configuration and its runs: points, the parallel evaluation of every point on
//! every held-out seed through the loopback session, and the rows of `eval.csv` and `summary.csv`.

use super::*;

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

pub(super) fn run_rows(points: &[Point], runs: &[Run]) -> Vec<RunRow> {
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
