//! `serve`: the bridge, the control plane and the trace recorder wired together, with a
//! checkpoint saved on shutdown.

use crate::bridge::{Bridge, BridgeConfig, BridgeError, Shutdown};
use crate::shared::Shared;
use crate::trace::{TraceError, TraceRecorder};
use malcolm_proto::bridge::TraceHeader;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error("control plane: {0}")]
    Control(#[from] tonic::transport::Error),
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] malcolm_policies::PolicyError),
    #[error("bridge thread panicked")]
    Panicked,
}

/// What `serve` needs beyond the bound sockets.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Record every envelope to this trace file.
    pub record: Option<PathBuf>,
    /// Save the active learner here on shutdown.
    pub checkpoint_on_exit: Option<PathBuf>,
    /// Scenario name for the trace header (informational).
    pub scenario: String,
}

/// Binds the bridge (blocking setup), to be run with [`run`].
pub fn bind(ctx: &zmq::Context, cfg: BridgeConfig) -> Result<Bridge, ServerError> {
    Ok(Bridge::bind(ctx, cfg)?)
}

/// Serves until `shutdown` resolves, then stops the bridge, finishes the trace and saves the
/// checkpoint (if asked). Tests start it with port-0 listeners.
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
                protocol_version: malcolm_proto::PROTOCOL_VERSION,
                recorder: format!("agent-server {}", env!("CARGO_PKG_VERSION")),
                scenario: opts.scenario.clone(),
                started_unix_ns: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                policy: shared.policy_name(),
            },
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
        let n = tokio::task::spawn_blocking(move || r.finish())
            .await
            .map_err(|_| ServerError::Panicked)??;
        tracing::info!(records = n, "trace written");
    }
    if let Some(path) = &opts.checkpoint_on_exit {
        let (_, factory) = shared.active();
        match factory.save_checkpoint(path) {
            Ok(info) => {
                tracing::info!(path = %info.path.display(), bytes = info.bytes, "checkpoint saved")
            }
            Err(malcolm_policies::PolicyError::Checkpoint(msg)) => {
                tracing::info!(%msg, "no checkpoint saved")
            }
            Err(e) => return Err(e.into()),
        }
    }
    control_task.await.map_err(|_| ServerError::Panicked)??;
    bridge_result?;
    Ok(())
}
