//! `agent-server omnetpp`: train Malcolm-Strict on OMNeT++ Cmdenv runs of an ini config and
//! evaluate it there, in one command. The runs are the environments; each is served by an
//! in-process bridge (the same session contract as `serve`), or, evaluating, by the embedded
//! agent inside the run where `libmalcolm_agent.so` is built. Training runs use repetitions
//! (seed sets) 0..100, validation 200.., the held-out test 100..; every wait is bounded by a
//! run timeout, and Ctrl-C kills the runs and saves the checkpoint.
//!
//! - [`runner`]: finding OMNeT++, building the modules, one served or embedded run.
//! - [`sca`]: a run's outcome from its `.sca` file.
//! - [`job`]: training with validation and the best checkpoint.
//! - [`eval`]: the held-out evaluation and its summary.
//! - [`report`]: the results folder (CSV, markdown with 95% intervals, PNG figures).

pub mod eval;
pub mod job;
pub mod report;
pub mod runner;
pub mod sca;

use eval::{Case, EvalPlan};
use job::{TrainPlan, EVAL_REP_BASE, VALIDATION_REP_BASE};
use malcolm_agents::AgentsConfig;
use malcolm_policies::{Mode, PolicyError, PolicyFactory};
use malcolm_serve::bridge::Shutdown;
use malcolm_serve::registry::{self, PolicyArgs};
use runner::{Omnetpp, DEFAULT_BUILD_TIMEOUT};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Training budget: about a dozen minutes of wall clock trains Hetero past the baselines on
/// a loaded 2-core machine (docs/results.md, "High fidelity").
pub const DEFAULT_MINUTES: f64 = 12.0;
/// Simulated time per training run: short runs give many run starts and curve points.
pub const DEFAULT_TRAIN_SIM_TIME: &str = "5ms";
/// Simulated time per evaluation (and validation) run: long enough for ~5,000 tasks on Hetero.
pub const DEFAULT_EVAL_SIM_TIME: &str = "5ms";
/// Held-out test repetitions per variant and policy: enough for a 95% interval.
pub const DEFAULT_EVAL_RUNS: usize = 5;
/// Validation repetitions per variant and validation.
pub const DEFAULT_VALIDATION_RUNS: usize = 2;
/// Validation interval (seconds).
pub const DEFAULT_VALIDATE_EVERY_S: f64 = 120.0;
/// Bound on one run's wall clock: far above a 20 ms run with a training agent.
pub const DEFAULT_RUN_TIMEOUT_S: f64 = 900.0;
/// With --quick: budget, simulated time per run (the ini's statistics start after a 1 ms
/// warm-up), runs per set, validation interval.
const QUICK_MINUTES: f64 = 0.5;
const QUICK_SIM_TIME: &str = "2ms";
const QUICK_RUNS: usize = 2;
const QUICK_VALIDATE_EVERY_S: f64 = 15.0;
const QUICK_RUN_TIMEOUT_S: f64 = 120.0;

/// `agent-server omnetpp`.
#[derive(clap::Args, Debug, Clone)]
pub struct OmnetppArgs {
    /// Ini config of ini/omnetpp.ini (Hetero, PfcStorm, Incast, ...).
    #[arg(long, env = "MALCOLM_OMNETPP_CONFIG", default_value = "Hetero")]
    pub ini_config: String,
    /// Run filter selecting one variant of a config with iteration variables (repeatable:
    /// each is trained on in turn and evaluated separately), e.g. `$fanIn==9 && $pfc==true`.
    #[arg(long = "where", default_value = "true")]
    pub variants: Vec<String>,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Training budget in minutes of wall clock (0: evaluate only).
    #[arg(long, env = "MALCOLM_TRAIN_MINUTES", default_value_t = DEFAULT_MINUTES)]
    pub minutes: f64,
    /// Stop training after this many runs (whichever comes first).
    #[arg(long)]
    pub max_runs: Option<u64>,
    /// Concurrent Cmdenv runs feeding the learner.
    #[arg(long, env = "MALCOLM_ENVS", default_value_t = 2)]
    pub envs: usize,
    /// Simulated time per training run.
    #[arg(long, default_value = DEFAULT_TRAIN_SIM_TIME)]
    pub train_sim_time: String,
    /// Simulated time per validation and evaluation run ("" keeps the ini's).
    #[arg(long, default_value = DEFAULT_EVAL_SIM_TIME)]
    pub eval_sim_time: String,
    /// Held-out test repetitions per variant and policy (100, 101, ...; 0: no evaluation).
    #[arg(long, default_value_t = DEFAULT_EVAL_RUNS)]
    pub eval_runs: usize,
    /// Validation repetitions per variant (200, 201, ...; 0: no validation).
    #[arg(long, default_value_t = DEFAULT_VALIDATION_RUNS)]
    pub validation_runs: usize,
    /// Validate the acting weights this often (seconds), and once at the end.
    #[arg(long, default_value_t = DEFAULT_VALIDATE_EVERY_S)]
    pub validate_every_s: f64,
    /// Baselines evaluated beside the learner (`+fcfs`: FCFS servers).
    #[arg(long, value_delimiter = ',', default_value = "po2+fcfs,slack-greedy")]
    pub baselines: Vec<String>,
    /// Another Malcolm-Strict checkpoint to evaluate, as LABEL=PATH (repeatable); it is
    /// served with the config stored in it (e.g. without link features).
    #[arg(long = "compare")]
    pub compare: Vec<String>,
    /// Start training from this checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Evaluation runs at a time.
    #[arg(long, default_value_t = 1)]
    pub eval_parallel: usize,
    /// Serve the evaluation runs over ZeroMQ even where the embedded agent
    /// (libmalcolm_agent.so: `cargo build --release -p malcolm-agent-ffi`) is built; by default
    /// they run with the agent inside (the same decisions, without the bridge's thread
    /// hand-offs; each run loads libtorch once, about 0.3 s).
    #[arg(long)]
    pub eval_over_zeromq: bool,
    /// Bound on one run's wall clock (seconds); a run over it is killed and fails the job.
    #[arg(long, default_value_t = DEFAULT_RUN_TIMEOUT_S)]
    pub run_timeout_s: f64,
    /// The repository (ini/, ned/, omnetpp/); default: the current directory when it has
    /// ini/omnetpp.ini, else the source tree this binary was built from.
    #[arg(long, env = "MALCOLM_REPO")]
    pub repo: Option<PathBuf>,
    /// Results folder (default: results/omnetpp-<config>-<unix time>).
    #[arg(long, env = "MALCOLM_RESULTS")]
    pub out: Option<PathBuf>,
    /// Smoke-test size: 30 s of training, 2 ms runs, 2 validation and 2 test runs.
    #[arg(long)]
    pub quick: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum OmnetppError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] runner::RunError),
    #[error("training: {0}")]
    Train(#[from] job::TrainError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    AgentsConfig(#[from] malcolm_serve::registry::AgentsConfigError),
    #[error("results: {0}")]
    Results(#[from] crate::results::ResultsError),
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: String, reason: String },
}

/// What a finished (or skipped) job says.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// OMNeT++ is not installed: nothing ran.
    Skipped(String),
    Done {
        out: PathBuf,
        markdown: String,
        interrupted: bool,
    },
}

/// The repository holding ini/omnetpp.ini.
pub fn repo_root(given: Option<&Path>) -> PathBuf {
    if let Some(p) = given {
        return p.to_path_buf();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    if cwd.join("ini/omnetpp.ini").is_file() {
        return cwd;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

/// A Malcolm-Strict factory for a checkpoint, configured as the checkpoint says (so one
/// trained without link features is served without them), loaded and in eval mode.
pub fn checkpoint_factory(
    path: &Path,
    agents: &AgentsConfig,
) -> Result<Arc<dyn PolicyFactory>, OmnetppError> {
    Ok(checkpoint_factory_and_config(path, agents)?.0)
}

/// [`checkpoint_factory`] and the learners' configuration it was made with.
fn checkpoint_factory_and_config(
    path: &Path,
    agents: &AgentsConfig,
) -> Result<(Arc<dyn PolicyFactory>, AgentsConfig), OmnetppError> {
    let bad = |reason: String| OmnetppError::Checkpoint {
        path: path.display().to_string(),
        reason,
    };
    let d = malcolm_agents::checkpoint::read(path).map_err(|e| bad(e.to_string()))?;
    let mut agents = agents.clone();
    if let Some(c) = d.metadata.get("config") {
        agents.iqn = serde_json::from_str(c).map_err(|e| bad(format!("its config: {e}")))?;
    }
    let f = registry::make_factory("malcolm-strict", &agents)?;
    f.load_checkpoint(path)?;
    f.set_mode(Mode::Eval);
    Ok((f, agents))
}

/// A learner's weights and the configuration they were trained with, for its embedded runs
/// (the configuration goes to `config_file`, handed over as `--agents-config`).
struct Learned<'a> {
    checkpoint: &'a Path,
    agents: &'a AgentsConfig,
    config_file: PathBuf,
}

/// Embedded-agent flags serving `policy` greedily (a learner with its weights); `None` when
/// a path has whitespace (the flags are split on it): that case is served over ZeroMQ.
fn embedded_flags(policy: &str, learned: Option<Learned>) -> Result<Option<String>, OmnetppError> {
    let mut flags = format!("--policy {policy} --mode eval");
    if let Some(l) = learned {
        let json = serde_json::to_string_pretty(l.agents).expect("agents config serialises");
        std::fs::write(&l.config_file, json).map_err(|source| runner::RunError::Io {
            what: format!("writing {}", l.config_file.display()),
            source,
        })?;
        for (flag, path) in [
            ("--checkpoint", l.checkpoint),
            ("--agents-config", &l.config_file),
        ] {
            let p = path.display().to_string();
            if p.chars().any(char::is_whitespace) {
                return Ok(None);
            }
            flags.push_str(&format!(" {flag} {p}"));
        }
    }
    Ok(Some(flags))
}

/// Runs the command: trains (unless `--minutes 0`), evaluates, writes the results folder.
pub fn run(a: &OmnetppArgs, stop: &Shutdown) -> Result<Outcome, OmnetppError> {
    let repo = repo_root(a.repo.as_deref());
    let Some(mut opp) = Omnetpp::find(&repo) else {
        return Ok(Outcome::Skipped(
            "OMNeT++ not found (set OMNETPP_ROOT or put opp_run on PATH): skipping the OMNeT++ \
             training and evaluation"
                .into(),
        ));
    };
    if !repo.join("ini/omnetpp.ini").is_file() {
        return Err(OmnetppError::Usage(format!(
            "{} has no ini/omnetpp.ini: pass --repo",
            repo.display()
        )));
    }
    let agents = registry::load_agents_config(a.policy.agents_config.as_deref())?;
    let q = a.quick;
    let minutes = if q {
        a.minutes.min(QUICK_MINUTES)
    } else {
        a.minutes
    };
    if minutes.is_nan() || minutes < 0.0 {
        return Err(OmnetppError::Usage("--minutes must be >= 0".into()));
    }
    let pick = |quick: &str, v: &str| if q { quick.to_string() } else { v.to_string() };
    let runs = |n: usize| if q { n.min(QUICK_RUNS) } else { n };
    let out = a.out.clone().unwrap_or_else(|| {
        crate::spec::default_out(&format!("omnetpp-{}", a.ini_config.to_lowercase()))
    });
    let io = |source| runner::RunError::Io {
        what: format!("creating {}", out.display()),
        source,
    };
    std::fs::create_dir_all(&out).map_err(io)?;
    // Absolute: the runs start in ini/ and write their results under it.
    let out = std::fs::canonicalize(&out).map_err(io)?;
    let run_timeout = Duration::from_secs_f64(if q {
        a.run_timeout_s.min(QUICK_RUN_TIMEOUT_S)
    } else {
        a.run_timeout_s
    });
    tracing::info!(omnetpp = %opp.root.display(), "building the OMNeT++ modules (cmake, incremental)");
    opp.build_modules(DEFAULT_BUILD_TIMEOUT, stop)?;
    opp.pin_library(&out.join("runs"))?;
    let variants = a.variants.clone();
    let eval_sim_time = pick(QUICK_SIM_TIME, &a.eval_sim_time);
    let plan = TrainPlan {
        config: a.ini_config.clone(),
        variants: variants.clone(),
        envs: a.envs.max(1),
        budget: Duration::from_secs_f64(minutes * 60.0),
        max_runs: a.max_runs,
        sim_time: pick(QUICK_SIM_TIME, &a.train_sim_time),
        run_timeout,
        validation_reps: (0..runs(a.validation_runs) as u64)
            .map(|i| VALIDATION_REP_BASE + i)
            .collect(),
        validate_every: Duration::from_secs_f64(if q {
            a.validate_every_s.min(QUICK_VALIDATE_EVERY_S)
        } else {
            a.validate_every_s
        }),
        validation_sim_time: eval_sim_time.clone(),
        out: out.clone(),
        show_progress: true,
    };
    let mut cases = Vec::new();
    let mut trained = None;
    if minutes > 0.0 {
        let learner = registry::make_factory(&a.policy.policy, &agents)?;
        if let Some(r) = &a.resume {
            learner.load_checkpoint(r)?;
        }
        eprintln!(
            "Training {} on OMNeT++ [{}] ({}) for {minutes:.1} min with {} Cmdenv run(s) at a \
             time, {} of simulated time each; results in {}",
            a.policy.policy,
            a.ini_config,
            variants.join(" | "),
            plan.envs,
            plan.sim_time,
            out.display()
        );
        let t = job::train(&opp, learner.clone(), &plan, stop)?;
        learner.save_checkpoint(&out.join("checkpoint.safetensors"))?;
        if t.interrupted {
            report::write(&out, a, &plan, Some(&t), &[], None)?;
            return Ok(Outcome::Done {
                out,
                markdown: String::new(),
                interrupted: true,
            });
        }
        if let Some(best) = &t.best_checkpoint {
            learner.load_checkpoint(best)?;
        }
        learner.set_mode(Mode::Eval);
        let weights = t
            .best_checkpoint
            .clone()
            .unwrap_or_else(|| out.join("checkpoint.safetensors"));
        cases.push(Case {
            label: "Malcolm-Strict (trained here)".into(),
            policy: a.policy.policy.clone(),
            factory: learner,
            embedded: embedded_flags(
                &a.policy.policy,
                Some(Learned {
                    checkpoint: &weights,
                    agents: &agents,
                    config_file: out.join("runs/agents-trained.json"),
                }),
            )?,
            extra: vec![],
        });
        trained = Some(t);
    }
    for (i, c) in a.compare.iter().enumerate() {
        let (label, path) = c
            .split_once('=')
            .ok_or_else(|| OmnetppError::Usage(format!("--compare {c:?}: want LABEL=PATH")))?;
        let path = std::fs::canonicalize(path).map_err(|e| OmnetppError::Checkpoint {
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        let (factory, config) = checkpoint_factory_and_config(&path, &agents)?;
        cases.push(Case {
            label: label.to_string(),
            policy: "malcolm-strict".into(),
            factory,
            embedded: embedded_flags(
                "malcolm-strict",
                Some(Learned {
                    checkpoint: &path,
                    agents: &config,
                    config_file: out.join(format!("runs/agents-compare-{i}.json")),
                }),
            )?,
            extra: vec![],
        });
    }
    for b in a.baselines.iter().filter(|b| !b.trim().is_empty()) {
        let (policy, fcfs) = match b.strip_suffix("+fcfs") {
            Some(p) => (p, true),
            None => (b.as_str(), false),
        };
        let f = registry::make_factory(policy, &agents)?;
        f.set_mode(Mode::Eval);
        cases.push(Case {
            label: if fcfs {
                format!("{policy} + FCFS")
            } else {
                format!("{policy} (EDF)")
            },
            policy: policy.to_string(),
            factory: f,
            embedded: embedded_flags(policy, None)?,
            extra: if fcfs {
                vec!["--**.scheduler.discipline=\"fcfs\"".into()]
            } else {
                vec![]
            },
        });
    }
    let eval_plan = EvalPlan {
        config: a.ini_config.clone(),
        variants,
        reps: (0..runs(a.eval_runs) as u64)
            .map(|i| EVAL_REP_BASE + i)
            .collect(),
        sim_time: eval_sim_time,
        run_timeout,
        parallel: a.eval_parallel.max(1),
        out: out.clone(),
        show_progress: true,
        agent_library: if a.eval_over_zeromq {
            None
        } else {
            runner::find_agent_library()
        },
    };
    match &eval_plan.agent_library {
        Some(lib) => eprintln!(
            "Evaluating with the embedded agent ({}) inside each run",
            lib.display()
        ),
        None => eprintln!(
            "Evaluating over ZeroMQ (in-process bridge){}",
            if a.eval_over_zeromq {
                ""
            } else {
                ": no libmalcolm_agent.so (cargo build --release -p malcolm-agent-ffi)"
            }
        ),
    }
    if eval_plan.reps.is_empty() || cases.is_empty() {
        let markdown = report::write(&out, a, &plan, trained.as_ref(), &[], None)?;
        return Ok(Outcome::Done {
            out,
            markdown,
            interrupted: false,
        });
    }
    let rows = match eval::evaluate(&opp, &cases, &eval_plan, stop) {
        Err(runner::RunError::Interrupted) => {
            report::write(&out, a, &plan, trained.as_ref(), &[], Some(&eval_plan))?;
            return Ok(Outcome::Done {
                out,
                markdown: String::new(),
                interrupted: true,
            });
        }
        r => r?,
    };
    let markdown = report::write(&out, a, &plan, trained.as_ref(), &rows, Some(&eval_plan))?;
    Ok(Outcome::Done {
        out,
        markdown,
        interrupted: false,
    })
}
