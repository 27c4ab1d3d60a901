//! Held-out evaluation on OMNeT++: every case (the trained learner, other checkpoints, the
//! baselines) served greedily to Cmdenv runs on the test repetitions of every variant, one
//! bridge per run; outcomes from the `.sca` files; per-run rows and a summary with 95%
//! intervals over runs.

use super::runner::{run_embedded, run_served, Omnetpp, RunError, RunSpec};
use crate::results::tail_ci;
use crate::stats::MeanCi;
use indicatif::{ProgressBar, ProgressStyle};
use malcolm_policies::PolicyFactory;
use malcolm_serve::bridge::Shutdown;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One policy to evaluate: its factory (already in eval mode), the same policy as embedded
/// agent flags (`None`: served only), and extra `opp_run` arguments (FCFS servers for
/// `+fcfs`).
#[derive(Clone)]
pub struct Case {
    pub label: String,
    pub policy: String,
    pub factory: Arc<dyn PolicyFactory>,
    pub embedded: Option<String>,
    pub extra: Vec<String>,
}

/// What the evaluation runs.
#[derive(Debug, Clone)]
pub struct EvalPlan {
    pub config: String,
    pub variants: Vec<String>,
    pub reps: Vec<u64>,
    pub sim_time: String,
    pub run_timeout: Duration,
    /// Runs at a time.
    pub parallel: usize,
    pub out: PathBuf,
    pub show_progress: bool,
    /// The embedded agent's library: cases with embedded flags run with the agent inside
    /// (same decisions, a fraction of the bridge's cost); `None` serves every run.
    pub agent_library: Option<PathBuf>,
}

/// One evaluated run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalRun {
    pub label: String,
    pub policy: String,
    pub config: String,
    pub variant: String,
    pub repetition: u64,
    pub tasks: u64,
    pub on_time: u64,
    pub late: u64,
    pub dropped: u64,
    pub miss_rate: f64,
    /// Generated tasks not finished (nor dropped) when the run ended, as a fraction of the
    /// generated ones: the miss rate does not count them.
    pub unfinished_fraction: f64,
    /// Latency over every task (dropped at +infinity), from the pooled histograms.
    pub p50_us: f64,
    pub p99_us: f64,
    pub decisions: u64,
    /// Placements behind a PFC-paused link at decision time, and their share of decisions.
    pub behind_paused: u64,
    pub behind_paused_fraction: f64,
    pub events_per_s: f64,
    pub wall_s: f64,
}

/// Summary of one (variant, label) over its runs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalSummary {
    pub variant: String,
    pub label: String,
    pub runs: usize,
    pub miss_rate: f64,
    pub miss_rate_ci95: f64,
    pub drop_rate: f64,
    pub unfinished_fraction: f64,
    pub p99_us: f64,
    pub p99_ci95: f64,
    pub behind_paused_fraction: f64,
    pub behind_paused_ci95: f64,
    pub tasks_per_run: f64,
    pub events_per_s: f64,
}

/// Runs every case on every variant and test repetition; `parallel` runs at a time.
pub fn evaluate(
    opp: &Omnetpp,
    cases: &[Case],
    plan: &EvalPlan,
    stop: &Shutdown,
) -> Result<Vec<EvalRun>, RunError> {
    let mut work = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        for (v, filter) in plan.variants.iter().enumerate() {
            for &rep in &plan.reps {
                work.push((c, case.clone(), v, filter.clone(), rep));
            }
        }
    }
    let pb = if plan.show_progress {
        let pb = ProgressBar::new(work.len() as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "evaluating in OMNeT++ [{elapsed_precise}] {bar:30} {pos}/{len} runs {msg}",
            )
            .expect("valid template"),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let queue = Mutex::new(work.into_iter().enumerate().collect::<Vec<_>>());
    let rows: Mutex<Vec<(usize, EvalRun)>> = Mutex::new(Vec::new());
    let failure: Mutex<Option<RunError>> = Mutex::new(None);
    let failed = Shutdown::new();
    std::thread::scope(|s| {
        for _ in 0..plan.parallel.max(1) {
            s.spawn(|| loop {
                if failed.is_triggered() || stop.is_triggered() {
                    return;
                }
                let Some((i, (c, case, v, filter, rep))) = queue.lock().expect("queue").pop()
                else {
                    return;
                };
                let spec = RunSpec {
                    config: plan.config.clone(),
                    filter: filter.clone(),
                    repetition: rep,
                    sim_time: plan.sim_time.clone(),
                    result_dir: plan.out.join(format!("runs/eval/c{c}-v{v}-r{rep}")),
                    env_id: format!("eval-c{c}-v{v}-r{rep}"),
                    extra: case.extra.clone(),
                };
                pb.set_message(format!("{}, {filter}, repetition {rep}", case.label));
                let result = match (&plan.agent_library, &case.embedded) {
                    (Some(lib), Some(flags)) => {
                        run_embedded(opp, lib, flags, &spec, plan.run_timeout, stop)
                    }
                    _ => run_served(opp, case.factory.clone(), &spec, plan.run_timeout, stop),
                };
                match result {
                    Ok(r) => {
                        let o = &r.outcome;
                        rows.lock().expect("rows").push((
                            i,
                            EvalRun {
                                label: case.label.clone(),
                                policy: case.policy.clone(),
                                config: plan.config.clone(),
                                variant: filter,
                                repetition: rep,
                                tasks: o.total(),
                                on_time: o.completed,
                                late: o.missed,
                                dropped: o.dropped,
                                miss_rate: o.miss_rate(),
                                unfinished_fraction: o.unfinished_fraction(),
                                p50_us: o.latency_quantile_us(0.5),
                                p99_us: o.latency_quantile_us(0.99),
                                decisions: r.decisions,
                                behind_paused: r.behind_paused,
                                behind_paused_fraction: r.behind_paused as f64
                                    / r.decisions.max(1) as f64,
                                events_per_s: o.events_per_s,
                                wall_s: r.wall_s,
                            },
                        ));
                        pb.inc(1);
                    }
                    Err(e) => {
                        failure.lock().expect("failure").get_or_insert(e);
                        failed.trigger();
                        return;
                    }
                }
            });
        }
    });
    pb.finish_and_clear();
    if let Some(e) = failure.into_inner().expect("failure") {
        return Err(e);
    }
    if stop.is_triggered() {
        return Err(RunError::Interrupted);
    }
    let mut rows = rows.into_inner().expect("rows");
    rows.sort_by_key(|(i, _)| *i);
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// Groups the runs by (variant, label) in first-seen order.
pub fn summarise(rows: &[EvalRun]) -> Vec<EvalSummary> {
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        let k = (r.variant.as_str(), r.label.as_str());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter()
        .map(|&(variant, label)| {
            let g: Vec<&EvalRun> = rows
                .iter()
                .filter(|r| r.variant == variant && r.label == label)
                .collect();
            let of =
                |f: fn(&EvalRun) -> f64| MeanCi::of(&g.iter().map(|r| f(r)).collect::<Vec<_>>());
            let miss = of(|r| r.miss_rate);
            let paused = of(|r| r.behind_paused_fraction);
            let p99 = tail_ci(&g.iter().map(|r| r.p99_us).collect::<Vec<_>>());
            EvalSummary {
                variant: variant.to_string(),
                label: label.to_string(),
                runs: g.len(),
                miss_rate: miss.mean,
                miss_rate_ci95: miss.half_width,
                drop_rate: of(|r| r.dropped as f64 / r.tasks.max(1) as f64).mean,
                unfinished_fraction: of(|r| r.unfinished_fraction).mean,
                p99_us: p99.mean,
                p99_ci95: p99.half_width,
                behind_paused_fraction: paused.mean,
                behind_paused_ci95: paused.half_width,
                tasks_per_run: of(|r| r.tasks as f64).mean,
                events_per_s: of(|r| r.events_per_s).mean,
            }
        })
        .collect()
}

/// The summary as markdown tables, one per variant.
pub fn markdown_tables(summary: &[EvalSummary]) -> String {
    let mut variants: Vec<&str> = Vec::new();
    for s in summary {
        if !variants.contains(&s.variant.as_str()) {
            variants.push(&s.variant);
        }
    }
    let mut md = String::new();
    for v in variants {
        if v != "true" {
            md += &format!("\n**Variant `{v}`**\n");
        }
        md += "\n| policy | runs | miss rate | dropped | unfinished at the end | p99 latency (us) | placed behind a paused link | tasks per run | sim events/s |\n\
               |---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
        for s in summary.iter().filter(|s| s.variant == v) {
            md += &format!(
                "| {} | {} | {:.2}% ± {:.2} | {:.2}% | {:.2}% | {} | {:.2}% ± {:.2} | {:.0} | {:.2} M |\n",
                s.label,
                s.runs,
                s.miss_rate * 100.0,
                s.miss_rate_ci95 * 100.0,
                s.drop_rate * 100.0,
                s.unfinished_fraction * 100.0,
                crate::results::fmt_tail(s.p99_us, s.p99_ci95),
                s.behind_paused_fraction * 100.0,
                s.behind_paused_ci95 * 100.0,
                s.tasks_per_run,
                s.events_per_s / 1e6,
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, variant: &str, miss: f64, p99: f64) -> EvalRun {
        EvalRun {
            label: label.into(),
            policy: "p".into(),
            config: "C".into(),
            variant: variant.into(),
            repetition: 0,
            tasks: 100,
            on_time: 90,
            late: 5,
            dropped: 5,
            miss_rate: miss,
            unfinished_fraction: 0.02,
            p50_us: 10.0,
            p99_us: p99,
            decisions: 100,
            behind_paused: 10,
            behind_paused_fraction: 0.1,
            events_per_s: 1e6,
            wall_s: 1.0,
        }
    }

    #[test]
    fn summary_groups_by_variant_and_label_with_intervals() {
        let rows = vec![
            row("a", "x", 0.1, 50.0),
            row("a", "x", 0.3, 70.0),
            row("b", "x", 0.2, f64::INFINITY),
            row("a", "y", 0.5, 10.0),
        ];
        let s = summarise(&rows);
        assert_eq!(s.len(), 3);
        assert_eq!(
            (s[0].variant.as_str(), s[0].label.as_str(), s[0].runs),
            ("x", "a", 2)
        );
        assert!((s[0].miss_rate - 0.2).abs() < 1e-12);
        // Two samples 0.1, 0.3: s = 0.1414, t(1) = 12.706, half-width 12.706 * 0.1 = 1.2706.
        assert!((s[0].miss_rate_ci95 - 1.2706).abs() < 1e-4);
        assert_eq!(s[0].p99_us, 60.0);
        assert!(
            s[1].p99_us.is_infinite(),
            "a run whose p99 is censored stays infinite"
        );
        assert_eq!(s[2].variant, "y");
        let md = markdown_tables(&s);
        assert!(md.contains("**Variant `x`**") && md.contains("**Variant `y`**"));
        assert!(
            md.contains("| b | 1 | 20.00% ± 0.00 | 5.00% | 2.00% | ∞ | 10.00% ± 0.00 |"),
            "{md}"
        );
    }
}
