//! OMNeT++ runs as environments: finding OMNeT++ and our module library, building the
//! modules, and one Cmdenv run of an ini config served by an in-process bridge
//! ([`run_served`]: its own ZeroMQ endpoint, its own counters) or by the embedded agent
//! inside the run ([`run_embedded`]: no bridge, the counts from the `.sca`), with a bounded
//! wait and its outcome read from the `.sca` file. Training, validation and evaluation are
//! all made of these.

use super::sca::{find_sca, ScaError, ScaOutcome};
use malcolm_policies::PolicyFactory;
use malcolm_serve::bridge::{Bridge, BridgeConfig, Shutdown};
use malcolm_serve::session::SessionConfig;
use malcolm_serve::shared::{Counters, Shared};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on building the simple modules (a fresh build of the core and modules takes a few
/// minutes on 2 cores; an up-to-date one seconds).
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often a wait checks its child, the deadline and Ctrl-C.
const POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bridge(#[from] malcolm_serve::bridge::BridgeError),
    #[error("{0}")]
    Sca(#[from] ScaError),
    #[error("{what} took over {secs:.0} s: killed (log: {log})")]
    Timeout {
        what: String,
        secs: f64,
        log: String,
    },
    #[error("{what} failed ({status}); last lines of {log}:\n{tail}")]
    Failed {
        what: String,
        status: String,
        log: String,
        tail: String,
    },
    #[error("{what}: wrote {n} .sca files, one wanted (a filter matching no run writes none, one matching several runs several: check --where against the config's iteration variables)")]
    RunCount { what: String, n: usize },
    #[error("{what}: no task finished after the warm-up (is --sim-time-limit above the ini's warm-up-period?)")]
    NoTasks { what: String },
    #[error("interrupted")]
    Interrupted,
    #[error("the bridge thread panicked")]
    Panicked,
}

/// An OMNeT++ installation and this repository's model (ini, NED, module library).
#[derive(Debug, Clone)]
pub struct Omnetpp {
    pub root: PathBuf,
    pub opp_run: PathBuf,
    /// The repository: `ini/omnetpp.ini`, `ned/`, `omnetpp/` (the modules' sources).
    pub repo: PathBuf,
    /// The module library the runs load (see [`Omnetpp::pin_library`]).
    pub library: PathBuf,
}

impl Omnetpp {
    /// OMNeT++ from `OMNETPP_ROOT`, else from `opp_run` on `PATH`; `None` when absent.
    pub fn find(repo: &Path) -> Option<Self> {
        Self::find_in(
            std::env::var_os("OMNETPP_ROOT").map(PathBuf::from),
            std::env::var_os("PATH"),
            repo,
        )
    }

    /// [`Omnetpp::find`] with the environment given: `root` (OMNETPP_ROOT) when set and
    /// non-empty, else the installation whose `bin/opp_run` is on `path`.
    pub fn find_in(
        root: Option<PathBuf>,
        path: Option<std::ffi::OsString>,
        repo: &Path,
    ) -> Option<Self> {
        let root = root.filter(|r| !r.as_os_str().is_empty()).or_else(|| {
            std::env::split_paths(&path?)
                .map(|d| d.join("opp_run"))
                .find(|p| p.is_file())
                .and_then(|p| std::fs::canonicalize(p).ok())
                .and_then(|p| Some(p.parent()?.parent()?.to_path_buf()))
        })?;
        let opp_run = root.join("bin/opp_run");
        opp_run.is_file().then(|| Self {
            root,
            opp_run,
            repo: repo.to_path_buf(),
            library: repo.join("omnetpp/build/libmalcolm_omnetpp.so"),
        })
    }

    /// Copies the library `build_modules` made into `dir` and runs that copy from now on:
    /// another build of the same tree (a second job, `omnetpp-check.sh`) relinks the library
    /// in place, and a run loading it half-written fails.
    pub fn pin_library(&mut self, dir: &Path) -> Result<(), RunError> {
        std::fs::create_dir_all(dir).map_err(io("creating the library folder"))?;
        let copy = dir.join("libmalcolm_omnetpp.so");
        std::fs::copy(self.build_dir().join("libmalcolm_omnetpp.so"), &copy)
            .map_err(io("copying the module library"))?;
        self.library = copy;
        Ok(())
    }

    fn build_dir(&self) -> PathBuf {
        self.repo.join("omnetpp/build")
    }

    /// Builds the simple modules (cmake, incremental; what `scripts/omnetpp-env.sh` does),
    /// bounded by `timeout`; the log goes to `omnetpp/build/last-module-build.log`.
    pub fn build_modules(&self, timeout: Duration, stop: &Shutdown) -> Result<(), RunError> {
        let build = self.build_dir();
        std::fs::create_dir_all(&build).map_err(io("creating omnetpp/build"))?;
        let log = build.join("last-module-build.log");
        let jobs = std::env::var("MALCOLM_CPP_JOBS").unwrap_or_else(|_| "2".into());
        let steps: [Vec<String>; 2] = [
            vec![
                "-S".into(),
                self.repo.join("omnetpp").display().to_string(),
                "-B".into(),
                build.display().to_string(),
                format!("-DOMNETPP_ROOT={}", self.root.display()),
                "-DCMAKE_BUILD_TYPE=RelWithDebInfo".into(),
            ],
            vec![
                "--build".into(),
                build.display().to_string(),
                "-j".into(),
                jobs,
                "--target".into(),
                "malcolm_omnetpp".into(),
            ],
        ];
        let deadline = Instant::now() + timeout;
        for args in steps {
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .map_err(io("opening the module build log"))?;
            let err = out.try_clone().map_err(io("module build log"))?;
            let child = Command::new("cmake")
                .args(&args)
                .stdout(out)
                .stderr(err)
                .spawn()
                .map_err(io("starting cmake (is it installed?)"))?;
            wait_child(child, deadline, stop, "building the OMNeT++ modules", &log)?;
        }
        Ok(())
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    move |source| RunError::Io {
        what: what.to_string(),
        source,
    }
}

/// Last `n` lines of a log file (for error messages).
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Waits for `child` until `deadline`, killing it on timeout or when `stop` is triggered.
fn wait_child(
    mut child: Child,
    deadline: Instant,
    stop: &Shutdown,
    what: &str,
    log: &Path,
) -> Result<(), RunError> {
    let started = Instant::now();
    loop {
        match child.try_wait().map_err(io(what))? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                return Err(RunError::Failed {
                    what: what.to_string(),
                    status: status.to_string(),
                    log: log.display().to_string(),
                    tail: tail(log, 15),
                })
            }
            None => {}
        }
        if stop.is_triggered() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            if stop.is_triggered() {
                return Err(RunError::Interrupted);
            }
            return Err(RunError::Timeout {
                what: what.to_string(),
                secs: started.elapsed().as_secs_f64(),
                log: log.display().to_string(),
            });
        }
        std::thread::sleep(POLL);
    }
}

/// One Cmdenv run: an ini config, a run filter selecting one variant (`$fanIn==9 &&
/// $pfc==true`, or `true`), and a repetition (the seed set).
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub config: String,
    pub filter: String,
    pub repetition: u64,
    /// `--sim-time-limit` (e.g. `5ms`); empty keeps the ini's.
    pub sim_time: String,
    pub result_dir: PathBuf,
    pub env_id: String,
    /// Extra `opp_run` arguments (e.g. `--**.scheduler.discipline="fcfs"`).
    pub extra: Vec<String>,
}

impl RunSpec {
    /// What the run is called in messages.
    pub fn name(&self) -> String {
        format!(
            "[{}] {} repetition {}",
            self.config, self.filter, self.repetition
        )
    }
}

/// What one served run produced.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub outcome: ScaOutcome,
    /// Decisions the agent served, and of those the placements behind a paused link.
    pub decisions: u64,
    pub behind_paused: u64,
    pub wall_s: f64,
}

/// Fresh ipc endpoints, unique in this process.
fn ipc_endpoint() -> (String, PathBuf) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "malcolm-omnetpp-{}-{}.sock",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    (format!("ipc://{}", path.display()), path)
}

/// The embedded agent's library (`libmalcolm_agent.so`): `MALCOLM_AGENT_LIBRARY`, else next
/// to this executable or one folder up (`target/release/` beside the binary, or above the
/// test executables in `deps/`); `None` when it was not built.
pub fn find_agent_library() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MALCOLM_AGENT_LIBRARY").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let found = [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join("libmalcolm_agent.so"))
        .find(|p| p.is_file());
    found
}

/// Runs `spec` in Cmdenv with the agent inside the run: `libmalcolm_agent.so` at `library`
/// opened with `flags` (`agent-server serve`'s --policy, --mode, --checkpoint,
/// --agents-config). Decisions and placements behind paused links come from the `.sca`.
pub fn run_embedded(
    opp: &Omnetpp,
    library: &Path,
    flags: &str,
    spec: &RunSpec,
    timeout: Duration,
    stop: &Shutdown,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    let endpoint = format!("embedded:{flags}");
    let outcome = run_opp(opp, spec, &endpoint, Some(library), started + timeout, stop)?;
    Ok(RunResult {
        decisions: outcome.agent_decisions.unwrap_or(0),
        behind_paused: outcome.agent_behind_paused.unwrap_or(0),
        outcome,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// Runs `spec` in Cmdenv against `factory` (in whatever mode the caller set), served by a
/// bridge of its own on a fresh ipc endpoint; strict: no fallback policy, so a run that
/// cannot reach the agent fails. Killed after `timeout` or when `stop` is triggered.
pub fn run_served(
    opp: &Omnetpp,
    factory: Arc<dyn PolicyFactory>,
    spec: &RunSpec,
    timeout: Duration,
    stop: &Shutdown,
) -> Result<RunResult, RunError> {
    let started = Instant::now();
    let shared = Shared::fixed(factory.clone());
    let (endpoint, sock) = ipc_endpoint();
    let ctx = zmq::Context::new();
    let bridge = Bridge::bind(
        &ctx,
        BridgeConfig {
            endpoints: vec![endpoint.clone()],
            workers: if factory.decides_inline() { 0 } else { 1 },
            session: SessionConfig {
                announce: false,
                ..SessionConfig::default()
            },
            ..BridgeConfig::default()
        },
    )?;
    let bridge_stop = Shutdown::new();
    let bridge_thread = {
        let (shared, s) = (shared.clone(), bridge_stop.clone());
        std::thread::spawn(move || bridge.run(shared, None, s))
    };
    let result = run_opp(opp, spec, &endpoint, None, started + timeout, stop);
    bridge_stop.trigger();
    let bridged = bridge_thread.join().map_err(|_| RunError::Panicked)?;
    let _ = std::fs::remove_file(&sock);
    let outcome = result?;
    bridged?;
    Ok(RunResult {
        outcome,
        decisions: Counters::get(&shared.counters.decisions),
        behind_paused: Counters::get(&shared.counters.placed_behind_paused),
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// One strict Cmdenv run of `spec` against `endpoint` (no fallback policy), killed at
/// `deadline` or when `stop` is triggered; its outcome from the one `.sca` it must write.
fn run_opp(
    opp: &Omnetpp,
    spec: &RunSpec,
    endpoint: &str,
    agent_library: Option<&Path>,
    deadline: Instant,
    stop: &Shutdown,
) -> Result<ScaOutcome, RunError> {
    let _ = std::fs::remove_dir_all(&spec.result_dir);
    std::fs::create_dir_all(&spec.result_dir).map_err(io("creating a result folder"))?;
    let log = spec.result_dir.join("opp_run.log");
    let out = std::fs::File::create(&log).map_err(io("creating the run log"))?;
    let err = out.try_clone().map_err(io("run log"))?;
    let filter = if spec.filter.trim().is_empty() || spec.filter.trim() == "true" {
        format!("$repetition=={}", spec.repetition)
    } else {
        format!("({}) && $repetition=={}", spec.filter, spec.repetition)
    };
    let mut args: Vec<String> = vec![
        "-u".into(),
        "Cmdenv".into(),
        "-l".into(),
        opp.library.display().to_string(),
        "-n".into(),
        opp.repo.join("ned").display().to_string(),
        "-c".into(),
        spec.config.clone(),
        "-r".into(),
        filter,
        format!("--repeat={}", spec.repetition + 1),
        format!("--result-dir={}", spec.result_dir.display()),
        "--cmdenv-express-mode=true".into(),
        "--cmdenv-status-frequency=600s".into(),
        format!("--**.coordinator.agentEndpoint=\"{endpoint}\""),
        "--**.coordinator.fallbackPolicy=\"\"".into(),
        format!("--**.coordinator.envId=\"{}\"", spec.env_id),
    ];
    if !spec.sim_time.is_empty() {
        args.push(format!("--sim-time-limit={}", spec.sim_time));
    }
    args.extend(spec.extra.iter().cloned());
    args.push("omnetpp.ini".into());
    tracing::debug!(run = %spec.name(), ?args, "starting opp_run");
    let mut cmd = Command::new(&opp.opp_run);
    if let Some(lib) = agent_library {
        cmd.env("MALCOLM_AGENT_LIBRARY", lib);
    }
    let child = cmd
        .args(&args)
        .current_dir(opp.repo.join("ini"))
        .env("LD_LIBRARY_PATH", ld_library_path(&opp.root))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io("starting opp_run"))?;
    wait_child(
        child,
        deadline,
        stop,
        &format!("OMNeT++ run {}", spec.name()),
        &log,
    )?;
    let n = std::fs::read_dir(&spec.result_dir)
        .map_err(io("reading a result folder"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sca"))
        .count();
    if n != 1 {
        return Err(RunError::RunCount {
            what: spec.name(),
            n,
        });
    }
    let sca = find_sca(&spec.result_dir).expect("one .sca file");
    let outcome = ScaOutcome::read(&sca)?;
    if outcome.total() == 0 {
        return Err(RunError::NoTasks { what: spec.name() });
    }
    Ok(outcome)
}

/// `LD_LIBRARY_PATH` with OMNeT++'s `lib/` first.
fn ld_library_path(root: &Path) -> std::ffi::OsString {
    let mut paths = vec![root.join("lib")];
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        paths.extend(std::env::split_paths(&old));
    }
    std::env::join_paths(paths).unwrap_or_default()
}
