//! The results folder of `agent-server omnetpp`: `eval.csv` (every test run), `summary.csv`,
//! `train_runs.csv`, `validation.csv`, `summary.md` (tables with 95% intervals over runs),
//! and PNG figures: miss rate (and p99 when finite) per policy with intervals, the training
//! and validation curve.

use super::eval::{markdown_tables, summarise, EvalPlan, EvalRun};
use super::job::{TrainPlan, Trained};
use super::OmnetppArgs;
use crate::plots::{bar_chart, line_chart, Bar, Chart, PlotError, Series};
use crate::results::{self, ResultsError};
use std::path::Path;

/// Training runs averaged per point of the training curve.
const CURVE_WINDOW: usize = 5;

/// Writes everything there is (an interrupted job has no evaluation); returns the markdown.
pub fn write(
    out: &Path,
    a: &OmnetppArgs,
    plan: &TrainPlan,
    trained: Option<&Trained>,
    rows: &[EvalRun],
    eval: Option<&EvalPlan>,
) -> Result<String, ResultsError> {
    let mut md = format!("# Malcolm-Strict on OMNeT++ `[{}]`\n\n", a.ini_config);
    let mut files = vec!["`summary.md`"];
    if let Some(t) = trained {
        results::write_csv(&out.join("train_runs.csv"), &t.runs)?;
        files.push("`train_runs.csv`");
        if !t.validation.is_empty() {
            results::write_csv(&out.join("validation.csv"), &t.validation)?;
            files.push("`validation.csv`");
        }
        files.push("`checkpoint.safetensors` (final weights)");
        if t.best_checkpoint.is_some() {
            files.push("`best.safetensors` (best validation, the one evaluated)");
        }
        if learning_curve(out, &a.ini_config, t)? {
            files.push("`learning_curve.png`");
        }
        let decisions: u64 = t.runs.iter().map(|r| r.decisions).sum();
        md += &format!(
            "Trained for {:.0} s of wall clock on {} Cmdenv runs of {} simulated each ({} at a \
             time; repetitions 0.., variants {}), {} decisions served to the learner{}.\n",
            t.wall_s,
            t.runs.len(),
            plan.sim_time,
            plan.envs,
            plan.variants
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", "),
            decisions,
            if t.interrupted { " (interrupted)" } else { "" }
        );
        if let Some(b) = &t.best {
            md += &format!(
                "Validation ({} greedy validations on repetitions {:?}, {} each): best miss rate \
                 {:.2}% (policy version {}, after {:.0} s), last {:.2}%.\n",
                t.validation.len(),
                plan.validation_reps,
                plan.validation_sim_time,
                b.miss_rate * 100.0,
                b.policy_version,
                b.wall_s,
                t.validation.last().map_or(f64::NAN, |p| p.miss_rate) * 100.0
            );
        }
    }
    if let (Some(e), false) = (eval, rows.is_empty()) {
        results::write_csv(&out.join("eval.csv"), rows)?;
        let summary = summarise(rows);
        results::write_csv(&out.join("summary.csv"), &summary)?;
        files.extend(["`eval.csv`", "`summary.csv`"]);
        md += &format!(
            "\nEvaluated greedily on held-out repetitions {:?} ({} of simulated time each; no \
             training or validation run used these seed sets), each policy served {}. Miss rate = (late + dropped) / tasks the EDF (or FCFS) servers \
             finished or dropped (their `.sca` counts; \"unfinished at the end\" = generated tasks \
             neither finished nor dropped when the run ended, which the miss rate does not \
             count); p99 over every task with drops at \
             +∞ (∞ when over 1% dropped), interpolated in the servers' pooled latency \
             histograms; \"placed behind a paused link\" = placements whose origin uplink or \
             target downlink was PFC-paused in the Step the decision answered, over all \
             decisions (counted by the agent from the Step's link state). ± is the 95% interval \
             over runs.\n",
            e.reps,
            if e.sim_time.is_empty() {
                "the ini's time"
            } else {
                &e.sim_time
            },
            if e.agent_library.is_some() {
                "by the embedded agent inside each run (the same session as the server's)"
            } else {
                "by an in-process bridge over ZeroMQ"
            }
        );
        md += &markdown_tables(&summary);
        let bars = |f: fn(&super::eval::EvalSummary) -> (f64, f64)| -> Vec<Bar> {
            summary
                .iter()
                .map(|s| {
                    let (v, h) = f(s);
                    Bar {
                        group: if s.variant == "true" {
                            a.ini_config.clone()
                        } else {
                            s.variant.clone()
                        },
                        series: s.label.clone(),
                        value: v,
                        ci: (h.is_finite() && h > 0.0).then_some((v - h, v + h)),
                    }
                })
                .collect()
        };
        let chart = |title: &str, y: &str| Chart {
            title: title.into(),
            x_label: String::new(),
            y_label: y.into(),
            x_log: false,
            y_log: false,
        };
        bar_chart(
            &out.join("miss_rate.png"),
            &chart(
                &format!(
                    "OMNeT++ [{}]: deadline miss rate (95% CI over runs)",
                    a.ini_config
                ),
                "miss rate %",
            ),
            &bars(|s| (s.miss_rate * 100.0, s.miss_rate_ci95 * 100.0)),
        )?;
        files.push("`miss_rate.png`");
        match bar_chart(
            &out.join("p99.png"),
            &chart(
                &format!("OMNeT++ [{}]: p99 task latency (finite ones)", a.ini_config),
                "p99 latency (us)",
            ),
            &bars(|s| (s.p99_us, s.p99_ci95)),
        ) {
            Ok(()) => files.push("`p99.png`"),
            Err(PlotError::Empty(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if summary.iter().any(|s| s.behind_paused_fraction > 0.0) {
            bar_chart(
                &out.join("behind_paused.png"),
                &chart(
                    &format!(
                        "OMNeT++ [{}]: tasks placed behind a paused link",
                        a.ini_config
                    ),
                    "% of decisions",
                ),
                &bars(|s| {
                    (
                        s.behind_paused_fraction * 100.0,
                        s.behind_paused_ci95 * 100.0,
                    )
                }),
            )?;
            files.push("`behind_paused.png`");
        }
    } else if eval.is_some() || trained.is_some_and(|t| t.interrupted) {
        md += "\nInterrupted before the evaluation finished: no test results.\n";
    }
    md += &format!(
        "\nFiles: {}; each run's `.sca` and log under `runs/`.\n",
        files.join(", ")
    );
    results::write_text(&out.join("summary.md"), &md)?;
    Ok(md)
}

/// Training runs (moving average) and validations against wall-clock seconds; false when
/// there is nothing to draw.
fn learning_curve(out: &Path, config: &str, t: &Trained) -> Result<bool, ResultsError> {
    let finite: Vec<_> = t.runs.iter().filter(|r| r.miss_rate.is_finite()).collect();
    if finite.is_empty() {
        return Ok(false);
    }
    let mut series = vec![Series {
        label: format!("training runs (exploring; moving average of {CURVE_WINDOW})"),
        points: finite
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let w = &finite[i.saturating_sub(CURVE_WINDOW - 1)..=i];
                let m = w.iter().map(|q| q.miss_rate).sum::<f64>() / w.len() as f64;
                (r.wall_s, m * 100.0, None)
            })
            .collect(),
    }];
    if !t.validation.is_empty() {
        series.push(Series {
            label: "greedy validation (validation repetitions)".into(),
            points: t
                .validation
                .iter()
                .map(|v| (v.wall_s, v.miss_rate * 100.0, None))
                .collect(),
        });
    }
    line_chart(
        &out.join("learning_curve.png"),
        &Chart {
            title: format!("Malcolm-Strict trained in OMNeT++ [{config}]"),
            x_label: "wall-clock seconds of training".into(),
            y_label: "deadline miss rate %".into(),
            x_log: false,
            y_log: false,
        },
        &series,
    )?;
    Ok(true)
}
