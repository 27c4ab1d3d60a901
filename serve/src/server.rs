//! `serve`: the bridge, the control plane and the trace recorder wired together, with a
//! checkpoint saved on shutdown. [`ServeArgs`] is the command line of `agent-server serve`;
//! [`Server::start`] binds everything (so the caller can print the bound addresses) and
//! [`Server::run`] serves until shutdown.

use crate::bridge::{Bridge, BridgeConfig, BridgeError, Shutdown, DEFAULT_SESSION_TIMEOUT};
use crate::registry::{self, AgentsConfigError, PolicyArgs};
use crate::session::{
    SessionConfig, DEFAULT_MAX_PENDING_DECISIONS, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_TASKS_PER_STEP,
};
use crate::shared::Shared;
use crate::trace::{TraceError, TraceRecorder, DEFAULT_RECORD_MAX_BYTES};
use malcolm_policies::{Mode, PolicyError};
use malcolm_proto::bridge::TraceHeader;
use malcolm_proto::codec::DEFAULT_MAX_MESSAGE_BYTES;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// ZeroMQ endpoint `serve` binds by default (all interfaces: the compose stack's envs
/// connect from other containers).
pub const DEFAULT_BIND: &str = "tcp://0.0.0.0:5555";
/// gRPC control-plane address `serve` listens on by default.
pub const DEFAULT_CONTROL: &str = "0.0.0.0:50051";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("control plane: {0}")]
    Control(#[from] tonic::transport::Error),
    #[error("binding the control plane on {addr}: {source}")]
    ControlBind {
        addr: String,
        source: std::io::Error,
    },
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    AgentsConfig(#[from] AgentsConfigError),
    #[error("loading checkpoint {path}: {source}")]
    LoadCheckpoint { path: String, source: PolicyError },
    #[error("saving the checkpoint {path} at shutdown failed: {source}; the learning since the last successful save is not on disk")]
    FinalSave { path: String, source: PolicyError },
    #[error("bridge thread panicked")]
    Panicked,
}

/// `agent-server serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// ZeroMQ endpoints to bind (comma-separated): tcp://HOST:PORT or ipc:///path.
    #[arg(long, env = "MALCOLM_BIND", default_value = DEFAULT_BIND, value_delimiter = ',')]
    pub bind: Vec<String>,
    /// gRPC control-plane address (HOST:PORT; port 0 picks a free one, printed at start).
    #[arg(long, env = "MALCOLM_CONTROL", default_value = DEFAULT_CONTROL)]
    pub control: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Initial mode: train (explore and learn), eval (greedy), frozen (greedy, never updated).
    #[arg(long, env = "MALCOLM_MODE", default_value = "train", value_parser = parse_mode)]
    pub mode: Mode,
    /// Checkpoint loaded at start when the file exists, and saved on shutdown (Ctrl-C/SIGTERM);
    /// a failed save makes the exit status non-zero.
    #[arg(long, env = "MALCOLM_CHECKPOINT")]
    pub checkpoint: Option<PathBuf>,
    /// Record every message to this trace file (`.zst` to compress).
    #[arg(long, env = "MALCOLM_RECORD")]
    pub record: Option<PathBuf>,
    /// Stop recording (with a warning) once the trace holds this many bytes of records.
    #[arg(long, env = "MALCOLM_RECORD_MAX_BYTES", default_value_t = DEFAULT_RECORD_MAX_BYTES)]
    pub record_max_bytes: u64,
    /// Seconds an env may stay silent before its session is expired.
    #[arg(long, env = "MALCOLM_SESSION_TIMEOUT_S", default_value_t = DEFAULT_SESSION_TIMEOUT.as_secs_f64())]
    pub session_timeout_s: f64,
    /// Worker threads deciding for the sessions (default: number of cores; 0 decides on the
    /// receiving thread, where one slow decision stalls every env).
    #[arg(long, env = "MALCOLM_WORKERS")]
    pub workers: Option<usize>,
    /// Largest message answered normally; larger ones get OVERSIZED, and above 4x this
    /// ZeroMQ drops the sender's connection (logged as a disconnect without Close).
    #[arg(long, env = "MALCOLM_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Pending tasks one Step may carry (more: INVALID_ARGUMENT).
    #[arg(long, env = "MALCOLM_MAX_TASKS_PER_STEP", default_value_t = DEFAULT_MAX_TASKS_PER_STEP)]
    pub max_tasks_per_step: usize,
    /// Placed tasks without an outcome a session may have (more: INVALID_ARGUMENT).
    #[arg(long, env = "MALCOLM_MAX_PENDING", default_value_t = DEFAULT_MAX_PENDING_DECISIONS)]
    pub max_pending: u64,
    /// Open sessions at a time (a Hello beyond: UNAVAILABLE).
    #[arg(long, env = "MALCOLM_MAX_SESSIONS", default_value_t = DEFAULT_MAX_SESSIONS)]
    pub max_sessions: u64,
    /// Scenario label written into the trace header.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "")]
    pub scenario: String,
}

/// Parses a mode name (train, eval, frozen) for clap.
pub fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse().map_err(|e: PolicyError| e.to_string())
}

/// What `serve` needs beyond the bound sockets.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Record every envelope to this trace file.
    pub record: Option<PathBuf>,
    /// Stop recording past this many bytes (0: no limit).
    pub record_max_bytes: u64,
    /// Save the active learner here on shutdown.
    pub checkpoint_on_exit: Option<PathBuf>,
    /// Scenario name for the trace header (informational).
    pub scenario: String,
}

/// A server with its sockets bound, ready to [`Server::run`].
pub struct Server {
    pub bridge: Bridge,
    pub control: tokio::net::TcpListener,
    pub shared: Arc<Shared>,
    pub options: ServeOptions,
}

impl Server {
    /// Makes the policy (loading the checkpoint when it exists), sets the mode, binds the
    /// bridge and the control plane. Call inside a tokio runtime.
    pub async fn start(a: ServeArgs) -> Result<Self, ServerError> {
        let shared = a.policy.shared()?;
        load_existing_checkpoint(&shared, a.checkpoint.as_deref())?;
        shared.set_mode(a.mode);
        let ctx = zmq::Context::new();
        let bridge = Bridge::bind(
            &ctx,
            BridgeConfig {
                endpoints: a.bind.clone(),
                workers: a.workers.unwrap_or_else(crate::bridge::default_workers),
                session_timeout: Duration::from_secs_f64(a.session_timeout_s),
                max_message_bytes: a.max_message_bytes,
                session: SessionConfig {
                    max_tasks_per_step: a.max_tasks_per_step,
                    max_pending_decisions: a.max_pending,
                    max_sessions: a.max_sessions,
                    ..SessionConfig::default()
                },
                ..BridgeConfig::default()
            },
        )?;
        let control = tokio::net::TcpListener::bind(&a.control)
            .await
            .map_err(|source| ServerError::ControlBind {
                addr: a.control.clone(),
                source,
            })?;
        Ok(Self {
            bridge,
            control,
            shared,
            options: ServeOptions {
                record: a.record,
                record_max_bytes: a.record_max_bytes,
                checkpoint_on_exit: a.checkpoint,
                scenario: a.scenario,
            },
        })
    }

    /// The control plane's bound address (the port chosen for `:0`).
    pub fn control_addr(&self) -> Option<std::net::SocketAddr> {
        self.control.local_addr().ok()
    }

    /// Serves until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        run(
            self.bridge,
            self.control,
            self.shared,
            self.options,
            shutdown,
        )
        .await
    }
}

/// Binds the bridge (blocking setup), to be run with [`run`].
pub fn bind(ctx: &zmq::Context, cfg: BridgeConfig) -> Result<Bridge, ServerError> {
    Ok(Bridge::bind(ctx, cfg)?)
}

/// Serves until `shutdown` resolves, then stops the bridge (telling the envs), finishes the
/// trace and saves the checkpoint (if asked; a failed save is an error). Tests start it with
/// port-0 listeners.
pub async fn run(
    bridge: Bridge,
    control: tokio::net::TcpListener,
    shared: Arc<Shared>,
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let recorder = match &opts.record {
        Some(path) => Some(TraceRecorder::spawn(
            path,
            TraceHeader {
                protocol_version: malcolm_proto::codec::PROTOCOL_V2,
                recorder: format!("agent-server {}", env!("CARGO_PKG_VERSION")),
                scenario: opts.scenario.clone(),
                started_unix_ns: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                policy: shared.policy_name(),
            },
            opts.record_max_bytes,
        )?),
        None => None,
    };
    let stop = Shutdown::new();
    let bridge_thread = {
        let (shared, stop, sink) = (
            shared.clone(),
            stop.clone(),
            recorder.as_ref().map(|r| r.sink()),
        );
        std::thread::Builder::new()
            .name("bridge-router".into())
            .spawn(move || bridge.run(shared, sink, stop))
            .map_err(|_| ServerError::Panicked)?
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let control_task = tokio::spawn(crate::control::run(control, shared.clone(), async {
        let _ = rx.await;
    }));
    shutdown.await;
    tracing::info!("shutting down");
    stop.trigger();
    let _ = tx.send(());
    let bridge_result = tokio::task::spawn_blocking(move || bridge_thread.join())
        .await
        .map_err(|_| ServerError::Panicked)?
        .map_err(|_| ServerError::Panicked)?;
    if let Some(r) = recorder {
        let stats = tokio::task::spawn_blocking(move || r.finish())
            .await
            .map_err(|_| ServerError::Panicked)??;
        tracing::info!(
            records = stats.records,
            bytes = stats.bytes,
            dropped = stats.dropped,
            "trace written"
        );
    }
    let saved = match &opts.checkpoint_on_exit {
        Some(path) => save_final(&shared, path),
        None => Ok(()),
    };
    control_task.await.map_err(|_| ServerError::Panicked)??;
    bridge_result?;
    saved
}

/// Loads `path` into the active policy when the file exists (a first run starts fresh and
/// saves there later).
pub(crate) fn load_existing_checkpoint(
    shared: &Shared,
    path: Option<&std::path::Path>,
) -> Result<(), ServerError> {
    let Some(ckpt) = path.filter(|p| p.exists()) else {
        return Ok(());
    };
    let (_, factory) = shared.active();
    let info = factory
        .load_checkpoint(ckpt)
        .map_err(|source| ServerError::LoadCheckpoint {
            path: ckpt.display().to_string(),
            source,
        })?;
    tracing::info!(path = %ckpt.display(), version = info.policy_version, "checkpoint loaded");
    Ok(())
}

/// The shutdown save: a policy with nothing to save is fine; any other failure is an error
/// (the old file, if any, is left as it was).
pub(crate) fn save_final(shared: &Shared, path: &std::path::Path) -> Result<(), ServerError> {
    let (_, factory) = shared.active();
    match factory.save_checkpoint(path) {
        Ok(info) => {
            tracing::info!(path = %info.path.display(), bytes = info.bytes, "checkpoint saved");
            Ok(())
        }
        Err(PolicyError::NoLearnedState(msg)) => {
            tracing::info!(%msg, "no checkpoint saved");
            Ok(())
        }
        Err(source) => {
            tracing::error!(path = %path.display(), error = %source, "checkpoint save failed");
            Err(ServerError::FinalSave {
                path: path.display().to_string(),
                source,
            })
        }
    }
}

impl PolicyArgs {
    /// The shared state with this policy active (learners configured from the file).
    pub fn shared(&self) -> Result<Arc<Shared>, ServerError> {
        let agents = registry::load_agents_config(self.agents_config.as_deref())?;
        Ok(Shared::new(&self.policy, registry::maker(agents))?)
    }
}
