//! The gRPC control plane (`malcolm.control.v1.AgentControl`), plus the standard health and
//! reflection services so stock gRPC tools work against the server.

use crate::shared::{Counters, Shared};
use malcolm_policies::Mode;
use malcolm_proto::control::agent_control_server::{AgentControl, AgentControlServer};
use malcolm_proto::control::{
    CheckpointReply, CheckpointRequest, GetStatusRequest, Metrics, SetModeRequest,
    SetPolicyRequest, Status, StreamMetricsRequest,
};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::Stream;
use tonic::{Request, Response};

/// Shortest metrics interval a client may ask for: faster sampling only burns CPU.
const MIN_METRICS_INTERVAL: Duration = Duration::from_millis(20);
/// Interval used when the client leaves it at 0.
const DEFAULT_METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// The control service (cheap to clone: tonic clones it per connection).
#[derive(Clone)]
pub struct Control {
    shared: Arc<Shared>,
    /// (when, decisions, learner updates) at the previous status, for the rates.
    last: Arc<Mutex<(Instant, u64, u64)>>,
}

impl Control {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            last: Arc::new(Mutex::new((Instant::now(), 0, 0))),
        }
    }

    pub fn status(&self) -> Status {
        let c = &self.shared.counters;
        let decisions = Counters::get(&c.decisions);
        let (_, factory) = self.shared.active();
        let l = factory.status();
        let (rate, update_rate) = {
            let mut last = self.last.lock().expect("status lock");
            let dt = last.0.elapsed().as_secs_f64();
            let per_s = |now: u64, before: u64| {
                if dt > 0.0 {
                    now.saturating_sub(before) as f64 / dt
                } else {
                    0.0
                }
            };
            let r = (per_s(decisions, last.1), per_s(l.updates, last.2));
            *last = (Instant::now(), decisions, l.updates);
            r
        };
        Status {
            envs_connected: Counters::get(&c.envs_connected) as u32,
            steps_total: Counters::get(&c.steps),
            decisions_total: decisions,
            decisions_per_second: rate,
            policy: factory.name().to_string(),
            policy_version: l.policy_version,
            mode: factory.mode().to_pb() as i32,
            learner_loss: l.loss,
            learner_updates: l.updates,
            replay_len: l.replay_len,
            replay_capacity: l.replay_capacity,
            errors_total: Counters::get(&c.errors),
            sessions_expired: Counters::get(&c.sessions_expired),
            episodes_total: Counters::get(&c.episodes),
            learner_updates_per_second: update_rate,
            transitions_inserted: l.transitions_inserted,
            transitions_dropped: l.transitions_dropped,
            samples_per_insert_target: l.target_samples_per_insert,
            samples_per_insert: l.samples_per_insert,
            env_wait_seconds: l.env_wait_s,
            disconnects: Counters::get(&c.disconnects),
        }
    }
}

impl Control {
    /// Runs a checkpoint save or load of the active policy off the async threads (it does
    /// file I/O and may wait for the learner).
    async fn checkpoint_op(
        &self,
        req: &CheckpointRequest,
        op: fn(
            &dyn malcolm_policies::PolicyFactory,
            &std::path::Path,
        ) -> Result<malcolm_policies::CheckpointInfo, malcolm_policies::PolicyError>,
    ) -> Result<Response<CheckpointReply>, tonic::Status> {
        let path = checkpoint_path(req)?;
        let (_, factory) = self.shared.active();
        let info = tokio::task::spawn_blocking(move || op(factory.as_ref(), &path))
            .await
            .map_err(|e| tonic::Status::internal(e.to_string()))?
            .map_err(|e| tonic::Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(CheckpointReply {
            path: info.path.display().to_string(),
            bytes: info.bytes,
            policy_version: info.policy_version,
        }))
    }
}

type MetricsStream = Pin<Box<dyn Stream<Item = Result<Metrics, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl AgentControl for Control {
    async fn get_status(
        &self,
        _req: Request<GetStatusRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        Ok(Response::new(self.status()))
    }

    async fn set_mode(
        &self,
        req: Request<SetModeRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        let pb = malcolm_proto::bridge::Mode::try_from(req.get_ref().mode)
            .map_err(|_| tonic::Status::invalid_argument("unknown mode value"))?;
        let mode = Mode::from_pb(pb)
            .ok_or_else(|| tonic::Status::invalid_argument("mode must be train, eval or frozen"))?;
        self.shared.set_mode(mode);
        tracing::info!(mode = mode.name(), "mode set over gRPC");
        Ok(Response::new(self.status()))
    }

    async fn set_policy(
        &self,
        req: Request<SetPolicyRequest>,
    ) -> Result<Response<Status>, tonic::Status> {
        let r = req.into_inner();
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let f = shared
                .set_policy(&r.policy)
                .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
            if !r.checkpoint.is_empty() {
                f.load_checkpoint(std::path::Path::new(&r.checkpoint))
                    .map_err(|e| tonic::Status::failed_precondition(e.to_string()))?;
            }
            tracing::info!(policy = %r.policy, "policy switched over gRPC");
            Ok::<_, tonic::Status>(())
        })
        .await
        .map_err(|e| tonic::Status::internal(e.to_string()))??;
        Ok(Response::new(self.status()))
    }

    async fn save_checkpoint(
        &self,
        req: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointReply>, tonic::Status> {
        self.checkpoint_op(req.get_ref(), |f, p| f.save_checkpoint(p))
            .await
    }

    async fn load_checkpoint(
        &self,
        req: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointReply>, tonic::Status> {
        self.checkpoint_op(req.get_ref(), |f, p| f.load_checkpoint(p))
            .await
    }

    type StreamMetricsStream = MetricsStream;

    async fn stream_metrics(
        &self,
        req: Request<StreamMetricsRequest>,
    ) -> Result<Response<Self::StreamMetricsStream>, tonic::Status> {
        let interval = match req.get_ref().interval_ms {
            0 => DEFAULT_METRICS_INTERVAL,
            ms => Duration::from_millis(ms as u64).max(MIN_METRICS_INTERVAL),
        };
        let me = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.tick().await;
            let c = &me.shared.counters;
            let (mut outcomes0, mut missed0) = (
                Counters::get(&c.outcomes),
                Counters::get(&c.outcomes_missed),
            );
            loop {
                tick.tick().await;
                let (p50, p99, _) = me.shared.take_decide_percentiles();
                let (outcomes, missed) = (
                    Counters::get(&c.outcomes),
                    Counters::get(&c.outcomes_missed),
                );
                let d_out = outcomes - outcomes0;
                let m = Metrics {
                    unix_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    status: Some(me.status()),
                    decide_p50_us: p50 as f64 / 1e3,
                    decide_p99_us: p99 as f64 / 1e3,
                    miss_rate: if d_out > 0 {
                        (missed - missed0) as f64 / d_out as f64
                    } else {
                        0.0
                    },
                    outcomes: d_out,
                };
                (outcomes0, missed0) = (outcomes, missed);
                if tx.send(Ok(m)).await.is_err() {
                    break; // client went away
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

fn checkpoint_path(r: &CheckpointRequest) -> Result<std::path::PathBuf, tonic::Status> {
    if r.path.is_empty() {
        return Err(tonic::Status::invalid_argument("checkpoint path is empty"));
    }
    Ok(std::path::PathBuf::from(&r.path))
}

/// Serves the control plane on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let control = Control::new(shared);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AgentControlServer<Control>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(malcolm_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .ok();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let mut router = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AgentControlServer::new(control));
    if let Some(r) = reflection {
        router = router.add_service(r);
    }
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
