//! The main job: train a learner on an embedded scenario (real ZeroMQ envs), checkpoint it,
//! evaluate it against the baselines on held-out seeds, and write a results folder.

use crate::eval::{evaluate, EvalCase, EvalRow, Run};
use crate::results::{self, ResultsError};
use crate::train::{train, CurvePoint, TrainError, TrainOptions};
use indicatif::{ProgressBar, ProgressStyle};
use malcolm_agents::AgentsConfig;
use malcolm_policies::{Mode, PolicyError, PolicyFactory};
use malcolm_serve::bridge::Shutdown;
use malcolm_serve::registry;
use malcolm_serve::shared::Shared;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// First held-out evaluation seed: far from the training seeds (`seed + 1_000_003 * env + k`).
pub const EVAL_SEED_BASE: u64 = 900_000_001;

#[derive(Debug, Clone)]
pub struct JobOptions {
    pub policy: String,
    pub agents: AgentsConfig,
    pub train: TrainOptions,
    /// Scenario of the held-out evaluation (usually the training scenario at full length).
    pub eval_scenario: String,
    pub eval_seeds: usize,
    pub eval_threads: usize,
    pub out: PathBuf,
    /// Checkpoint to start from (resume).
    pub resume: Option<PathBuf>,
    /// Extra comparison cases; `None` means [`default_cases`].
    pub cases: Option<Vec<EvalCase>>,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("training: {0}")]
    Train(#[from] TrainError),
    #[error("evaluation: {0}")]
    Eval(#[from] crate::eval::EvalError),
    #[error("results: {0}")]
    Results(#[from] ResultsError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What the job wrote.
#[derive(Debug, Clone)]
pub struct JobSummary {
    pub out: PathBuf,
    pub checkpoint: Option<PathBuf>,
    pub interrupted: bool,
    pub curve_len: usize,
    pub summary: Vec<results::SummaryRow>,
    pub markdown: String,
}

/// The comparison the design makes for a scenario: the learner with EDF nodes, power-of-2 with
/// FCFS nodes (the classic system), the ideal rack for `hetero`, and the other baselines.
pub fn default_cases(policy: &str, scenario: &str) -> Vec<EvalCase> {
    use crate::spec::fcfs;
    let mut v = vec![
        EvalCase::new("Malcolm-Strict (IQN+CVaR, EDF)", policy, scenario),
        EvalCase::new("Po2 + FCFS", "po2", &fcfs(scenario)),
    ];
    if scenario == "hetero" || scenario.starts_with("hetero:") {
        let ideal = scenario.replacen("hetero", "ideal", 1);
        v.push(EvalCase::new(
            "Po2 + FCFS, ideal (all fast)",
            "po2",
            &fcfs(&ideal),
        ));
    }
    v.extend([
        EvalCase::new("JSQ (EDF)", "jsq", scenario),
        EvalCase::new("Slack-greedy (EDF)", "slack-greedy", scenario),
        EvalCase::new("TOD-N (EDF)", "tod-n", scenario),
        EvalCase::new("Random (EDF)", "random", scenario),
    ]);
    v
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Evaluates `cases` where specs equal to the learner's name use the learner (in eval mode).
pub fn evaluate_with_learner(
    shared: &Arc<Shared>,
    agents: &AgentsConfig,
    cases: &[EvalCase],
    seeds: &[u64],
    threads: usize,
    show_progress: bool,
) -> Result<Vec<Run>, JobError> {
    let (_, learner) = shared.active();
    let learner_name = learner.name().to_string();
    let resolve = |spec: &str| -> Result<Arc<dyn PolicyFactory>, PolicyError> {
        if spec == learner_name || registry::parse_policy_spec(spec)?.0 == learner_name {
            Ok(learner.clone())
        } else {
            registry::make_factory(spec, agents)
        }
    };
    let pb = if show_progress {
        let pb = ProgressBar::new((cases.len() * seeds.len()) as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "evaluating [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .expect("valid template"),
        );
        pb
    } else {
        ProgressBar::hidden()
    };
    let rows = evaluate(cases, seeds, &resolve, threads, Some(&pb))?;
    pb.finish_and_clear();
    Ok(rows)
}

/// Runs the main job. `shared` holds the learner (made from `opts.policy`); the caller may
/// serve the control plane on it meanwhile. `stop` (Ctrl-C) ends training early: the
/// checkpoint and the curve are still written, the evaluation is skipped.
pub fn run_main_job(
    shared: Arc<Shared>,
    opts: &JobOptions,
    stop: &Shutdown,
) -> Result<JobSummary, JobError> {
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let (_, factory) = shared.active();
    if let Some(ckpt) = &opts.resume {
        let info = factory.load_checkpoint(ckpt)?;
        tracing::info!(path = %ckpt.display(), version = info.policy_version, "resumed from checkpoint");
    }
    shared.set_mode(Mode::Train);
    tracing::info!(scenario = %opts.train.scenario, budget_s = opts.train.budget.as_secs(), envs = opts.train.envs, "training");
    let outcome = train(shared.clone(), &opts.train, stop)?;
    let curve = &outcome.curve;
    results::write_csv(&opts.out.join("learning_curve.csv"), curve)?;
    if !outcome.validation.is_empty() {
        results::write_csv(&opts.out.join("validation.csv"), &outcome.validation)?;
    }
    let learner = factory.status();
    let checkpoint = opts.out.join("checkpoint.safetensors");
    let checkpoint = match factory.save_checkpoint(&checkpoint) {
        Ok(info) => Some(info.path),
        Err(PolicyError::NoLearnedState(msg)) => {
            tracing::info!(%msg, "policy has nothing to checkpoint");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let curve_plot = |curve: &[CurvePoint]| -> Result<(), JobError> {
        if !curve.is_empty() {
            results::learning_curve_with_validation_plot(
                &opts.out.join("learning_curve.png"),
                &format!("{} on {}", opts.policy, opts.train.scenario),
                curve,
                &outcome.validation,
                outcome.baseline.as_ref(),
                5,
            )?;
        }
        Ok(())
    };
    curve_plot(curve)?;
    let validation_line = validation_summary(&outcome);
    if stop.is_triggered() || opts.eval_seeds == 0 {
        let md = format!(
            "# {} on `{}` (trained and validated, not evaluated)\n{validation_line}",
            opts.policy, opts.train.scenario
        );
        results::write_text(&opts.out.join("summary.md"), &md)?;
        return Ok(JobSummary {
            out: opts.out.clone(),
            checkpoint,
            interrupted: stop.is_triggered(),
            curve_len: curve.len(),
            summary: vec![],
            markdown: md,
        });
    }
    // Evaluate the best validated weights, not whatever training ended on.
    let evaluated = match (&outcome.best, &opts.train.validation) {
        (Some(best), Some(v)) => {
            factory.load_checkpoint(&v.best_checkpoint)?;
            format!(
                "the best validation checkpoint (`best.safetensors`: policy version {}, validation \
                 miss rate {:.2}% on {} validation seeds after {:.0} s; final weights in \
                 `checkpoint.safetensors`)",
                best.policy_version,
                best.miss_rate * 100.0,
                v.seeds.len(),
                best.wall_s
            )
        }
        _ => "the final weights (`checkpoint.safetensors`)".to_string(),
    };
    shared.set_mode(Mode::Eval);
    let cases = opts
        .cases
        .clone()
        .unwrap_or_else(|| default_cases(&opts.policy, &opts.eval_scenario));
    let seeds: Vec<u64> = (0..opts.eval_seeds as u64)
        .map(|i| EVAL_SEED_BASE + i)
        .collect();
    let runs = evaluate_with_learner(
        &shared,
        &opts.agents,
        &cases,
        &seeds,
        opts.eval_threads,
        opts.train.show_progress,
    )?;
    let rows: Vec<EvalRow> = runs.iter().map(|r| r.row.clone()).collect();
    results::write_csv(&opts.out.join("eval.csv"), &rows)?;
    let summary = results::summarise(&rows);
    results::write_csv(&opts.out.join("summary.csv"), &summary)?;
    let cdf_runs: Vec<(String, &rack_sim::Report)> = runs
        .iter()
        .map(|r| (r.row.label.clone(), &r.report))
        .collect();
    results::latency_cdf_plot(
        &opts.out.join("latency_cdf.png"),
        &format!(
            "Latency CDF on {} (held-out seed {})",
            opts.eval_scenario, seeds[0]
        ),
        &cdf_runs,
    )?;
    let table = results::markdown_table(&summary);
    let train_s = curve.last().map_or(0.0, |p| p.wall_s);
    let learner_line = if learner.updates > 0 {
        format!(
            "\nLearner: {} updates in {:.0} s ({:.1} updates/s), replay ratio {:.2} samples per \
             inserted transition (configured {:.0}), {} transitions inserted, {} dropped, \
             envs waited {:.0} s for the learner in all.\n",
            learner.updates,
            train_s,
            learner.updates as f64 / train_s.max(1e-9),
            learner.samples_per_insert,
            learner.target_samples_per_insert,
            learner.transitions_inserted,
            learner.transitions_dropped,
            learner.env_wait_s
        )
    } else {
        String::new()
    };
    let learner_and_validation = format!("{learner_line}{validation_line}");
    let md = format!(
        "# {} on `{}`\n\nTrained for {:.0} s of wall clock ({} episodes of `{}`, {} envs over \
         ZeroMQ), then evaluated greedily from {} on {} held-out seeds ({}..). ± is the 95% \
         interval over seeds; the miss rate counts late completions and drops.\n{}\n{}\n{}\n\nFiles: `eval.csv` (every run), `summary.csv`, `learning_curve.csv`, \
         `validation.csv`, `latency_cdf.png`, `learning_curve.png`{}.\n",
        opts.policy,
        opts.eval_scenario,
        train_s,
        curve.len(),
        opts.train.scenario,
        opts.train.envs,
        evaluated,
        seeds.len(),
        EVAL_SEED_BASE,
        learner_and_validation,
        table,
        ratios(&summary),
        if checkpoint.is_some() {
            ", `checkpoint.safetensors` (weights, optimiser state and config in its metadata)"
        } else {
            ""
        }
    );
    results::write_text(&opts.out.join("summary.md"), &md)?;
    Ok(JobSummary {
        out: opts.out.clone(),
        checkpoint,
        interrupted: false,
        curve_len: curve.len(),
        summary,
        markdown: md,
    })
}

/// The validation's best against the baseline on the same validation seeds (markdown).
fn validation_summary(outcome: &crate::train::TrainOutcome) -> String {
    let Some(best) = &outcome.best else {
        return String::new();
    };
    let last = outcome
        .validation
        .last()
        .map_or(best.miss_rate, |p| p.miss_rate);
    let reference = outcome
        .baseline
        .as_ref()
        .map_or(String::new(), |(name, miss, _)| {
            format!("; {name} on the same seeds: {:.2}%", miss * 100.0)
        });
    format!(
        "\nValidation ({} greedy validations): best miss rate {:.2}% (policy version {}, after {:.0} s), \
         last {:.2}%{reference}.\n",
        outcome.validation.len(),
        best.miss_rate * 100.0,
        best.policy_version,
        best.wall_s,
        last * 100.0,
    )
}

/// The design's headline ratios, when the summary has the rows they need.
pub fn ratios(summary: &[results::SummaryRow]) -> String {
    let find = |prefix: &str| summary.iter().find(|r| r.label.starts_with(prefix));
    let mut s = String::new();
    if let (Some(ms), Some(po2)) = (find("Malcolm-Strict"), find("Po2 + FCFS")) {
        if po2.goodput_per_s > 0.0 {
            s += &format!(
                "- Malcolm-Strict goodput is {:.2}x that of Po2 + FCFS (design: 4.64x).\n",
                ms.goodput_per_s / po2.goodput_per_s
            );
        }
        if let Some(ideal) = find("Po2 + FCFS, ideal") {
            if ideal.goodput_per_s > 0.0 {
                s += &format!(
                    "- Malcolm-Strict reaches {:.1}% of the ideal rack's goodput (design: 75.4%).\n",
                    100.0 * ms.goodput_per_s / ideal.goodput_per_s
                );
            }
        }
        s += &format!(
            "- Miss rate: Po2 + FCFS {:.2}%, Malcolm-Strict {:.3}% (design: 60.13% / 0.02%).\n",
            po2.miss_rate * 100.0,
            ms.miss_rate * 100.0
        );
    }
    s
}
