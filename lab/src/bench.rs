//! `bench bridge`: round-trip latency of a Step over ipc:// and tcp:// loopback, and
//! throughput with several concurrent envs, against the real bridge and session code.

use crate::bridge::{Bridge, BridgeConfig, Shutdown};
use crate::shared::Shared;
use hdrhistogram::Histogram;
use malcolm_proto::bridge::{envelope::Body, *};
use malcolm_proto::codec::{decode_envelope, encode_envelope, DEFAULT_MAX_MESSAGE_BYTES};
use malcolm_proto::envelope;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BridgeBenchOptions {
    pub nodes: u32,
    pub tasks: u32,
    /// Timed round trips per transport.
    pub round_trips: u32,
    /// Concurrent envs for the throughput figure.
    pub envs: u32,
    pub throughput_for: Duration,
    /// Bridge worker threads (0 = sessions on the router thread).
    pub workers: usize,
}

impl BridgeBenchOptions {
    pub fn full() -> Self {
        Self {
            nodes: 64,
            tasks: 16,
            round_trips: 20_000,
            envs: 4,
            throughput_for: Duration::from_secs(3),
            workers: crate::bridge::DEFAULT_WORKERS,
        }
    }
    pub fn quick() -> Self {
        Self {
            round_trips: 500,
            throughput_for: Duration::from_millis(300),
            ..Self::full()
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyFigure {
    pub transport: String,
    pub message_bytes: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BridgeBenchReport {
    pub policy: String,
    pub latency: Vec<LatencyFigure>,
    /// The same round trips against a raw ZeroMQ ROUTER echo (no protobuf, no session): the
    /// transport's floor on this machine, measured in the same run.
    pub echo_floor: Vec<LatencyFigure>,
    pub envs: u32,
    pub steps_per_second: f64,
    pub decisions_per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Bridge(#[from] crate::bridge::BridgeError),
    #[error("zeromq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("bench env: {0}")]
    Env(String),
}

/// A synthetic but realistic Step: every node's STH and heartbeat, a GST for each origin.
pub fn synthetic_step(n: u32, tasks: u32, index: u64) -> Step {
    let gst: Vec<u8> = (0..n)
        .flat_map(|i| {
            malcolm_proto::Heartbeat::from_values(i as u8, 0, 700, 5, 40, 3 + i as u64, 1).encode()
        })
        .collect();
    let origins: Vec<u32> = (0..tasks).map(|t| (t * 7 + index as u32) % n).collect();
    Step {
        sim_time_ns: index * 2_000,
        episode: 0,
        step_index: index,
        nodes: (0..n)
            .map(|i| NodeState {
                node_id: i,
                sth: Some(Sth {
                    buckets: (0..16).map(|b| (b * 3 + i) % 7).collect(),
                    total_tasks: 40,
                    min_slack_us: -2,
                    sum_load_us: 400,
                }),
                heartbeat: Some(HeartbeatFields {
                    node_id: i,
                    flags: 0,
                    load_factor_milli: 700,
                    slack_p10_us: 5,
                    slack_p50_us: 40,
                    queue_len: 3 + i,
                    policy_version: 1,
                }),
                gst: origins.contains(&i).then(|| GlobalStateView {
                    heartbeats: gst.clone(),
                    age_ns: vec![25_000; n as usize],
                }),
                utilisation: 0.7,
            })
            .collect(),
        links: vec![],
        tasks: origins
            .iter()
            .enumerate()
            .map(|(t, &o)| PendingTask {
                task_id: index * 1000 + t as u64,
                origin: o,
                size_bytes: 2048,
                service_estimate_ns: 10_000,
                deadline_ns: index * 2_000 + 30_000,
                arrival_ns: index * 2_000,
                class: 0,
            })
            .collect(),
        outcomes: vec![],
    }
}

/// A Hello for a rack of `n` fast EDF nodes (benchmarks and tests).
pub fn synthetic_hello(n: u32, env_id: &str) -> Hello {
    Hello {
        env_id: env_id.into(),
        simulator: "bench".into(),
        scenario: "synthetic".into(),
        seed: 1,
        nodes: (0..n)
            .map(|i| NodeSpec {
                node_id: i,
                cores: 4,
                speed: 1.0,
                kind: "fast".into(),
                discipline: Discipline::Edf as i32,
            })
            .collect(),
        sth: Some(malcolm_proto::sth_config()),
        heartbeat_interval_ns: 50_000,
        parameters: Default::default(),
    }
}

struct BenchEnv {
    sock: zmq::Socket,
    next_id: u64,
}

impl BenchEnv {
    fn connect(ctx: &zmq::Context, ep: &str, n: u32, name: &str) -> Result<Self, BenchError> {
        let sock = ctx.socket(zmq::DEALER)?;
        sock.set_linger(0)?;
        sock.set_rcvtimeo(5_000)?;
        sock.connect(ep)?;
        let mut env = Self { sock, next_id: 1 };
        env.call(&encode_envelope(&envelope(
            0,
            Body::Hello(synthetic_hello(n, name)),
        )))?;
        Ok(env)
    }

    fn call(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        self.sock.send(bytes, 0)?;
        let reply = self.sock.recv_bytes(0)?;
        let env = decode_envelope(&reply, DEFAULT_MAX_MESSAGE_BYTES)
            .map_err(|e| BenchError::Env(e.to_string()))?;
        match env.body {
            Some(Body::Error(e)) => Err(BenchError::Env(e.message)),
            _ => Ok(()),
        }
    }

    fn step_bytes(&mut self, n: u32, tasks: u32, index: u64) -> Vec<u8> {
        let id = self.next_id;
        self.next_id += 1;
        encode_envelope(&envelope(id, Body::Step(synthetic_step(n, tasks, index))))
    }
}

/// Round trips of `payload` against a ROUTER that sends every message straight back.
fn echo_floor(
    ctx: &zmq::Context,
    endpoint: &str,
    transport: &str,
    payload: &[u8],
    round_trips: u32,
) -> Result<LatencyFigure, BenchError> {
    let router = ctx.socket(zmq::ROUTER)?;
    router.set_linger(0)?;
    router.bind(endpoint)?;
    let ep = router
        .get_last_endpoint()?
        .unwrap_or_else(|_| endpoint.to_string());
    let n = round_trips as usize + (round_trips as usize / 10).max(50);
    let echo = std::thread::spawn(move || -> Result<(), zmq::Error> {
        for _ in 0..n {
            let parts = router.recv_multipart(0)?;
            router.send_multipart(parts, 0)?;
        }
        Ok(())
    });
    let sock = ctx.socket(zmq::DEALER)?;
    sock.set_linger(0)?;
    sock.set_rcvtimeo(5_000)?;
    sock.connect(&ep)?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
    for i in 0..n {
        let t0 = Instant::now();
        sock.send(payload, 0)?;
        sock.recv_bytes(0)?;
        if i >= n - round_trips as usize {
            h.saturating_record(t0.elapsed().as_nanos() as u64);
        }
    }
    echo.join()
        .map_err(|_| BenchError::Env("echo thread panicked".into()))??;
    Ok(LatencyFigure {
        transport: transport.to_string(),
        message_bytes: payload.len(),
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
        mean_us: h.mean() / 1e3,
    })
}

/// Runs the benchmark against a bridge serving `shared`'s active policy.
pub fn bridge_bench(
    shared: Arc<Shared>,
    opts: &BridgeBenchOptions,
) -> Result<BridgeBenchReport, BenchError> {
    let ctx = zmq::Context::new();
    let ipc_path = std::env::temp_dir().join(format!("malcolm-bench-{}.sock", std::process::id()));
    let bridge = Bridge::bind(
        &ctx,
        BridgeConfig {
            endpoints: vec![
                format!("ipc://{}", ipc_path.display()),
                "tcp://127.0.0.1:*".into(),
            ],
            workers: opts.workers,
            ..BridgeConfig::default()
        },
    )?;
    let endpoints = bridge.endpoints().to_vec();
    let stop = Shutdown::new();
    let thread = {
        let (shared, stop) = (shared.clone(), stop.clone());
        std::thread::spawn(move || bridge.run(shared, None, stop))
    };
    let result = (|| {
        let mut latency = Vec::new();
        for (name, ep) in [("ipc", &endpoints[0]), ("tcp", &endpoints[1])] {
            let mut env = BenchEnv::connect(&ctx, ep, opts.nodes, name)?;
            let mut h = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds");
            let warmup = (opts.round_trips / 10).max(50) as u64;
            let mut size = 0;
            for i in 0..warmup + opts.round_trips as u64 {
                let bytes = env.step_bytes(opts.nodes, opts.tasks, i);
                size = bytes.len();
                let t0 = Instant::now();
                env.call(&bytes)?;
                if i >= warmup {
                    h.saturating_record(t0.elapsed().as_nanos() as u64);
                }
            }
            latency.push(LatencyFigure {
                transport: name.to_string(),
                message_bytes: size,
                p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
                p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
                mean_us: h.mean() / 1e3,
            });
        }
        // Throughput: several envs in lockstep at once over ipc.
        let deadline = Instant::now() + opts.throughput_for;
        let workers: Vec<_> = (0..opts.envs)
            .map(|e| {
                let (ctx, ep, o) = (ctx.clone(), endpoints[0].clone(), opts.clone());
                std::thread::spawn(move || -> Result<u64, BenchError> {
                    let mut env = BenchEnv::connect(&ctx, &ep, o.nodes, &format!("tput-{e}"))?;
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let bytes = env.step_bytes(o.nodes, o.tasks, i);
                        env.call(&bytes)?;
                        i += 1;
                    }
                    Ok(i)
                })
            })
            .collect();
        let t0 = Instant::now();
        let mut steps = 0;
        for w in workers {
            steps += w
                .join()
                .map_err(|_| BenchError::Env("bench env panicked".into()))??;
        }
        let secs = t0.elapsed().as_secs_f64();
        let payload = encode_envelope(&envelope(
            1,
            Body::Step(synthetic_step(opts.nodes, opts.tasks, 0)),
        ));
        let echo_ipc =
            std::env::temp_dir().join(format!("malcolm-echo-{}.sock", std::process::id()));
        let echo_floor = vec![
            echo_floor(
                &ctx,
                &format!("ipc://{}", echo_ipc.display()),
                "ipc",
                &payload,
                opts.round_trips,
            )?,
            echo_floor(&ctx, "tcp://127.0.0.1:*", "tcp", &payload, opts.round_trips)?,
        ];
        let _ = std::fs::remove_file(&echo_ipc);
        Ok(BridgeBenchReport {
            policy: shared.policy_name(),
            latency,
            echo_floor,
            envs: opts.envs,
            steps_per_second: steps as f64 / secs,
            decisions_per_second: (steps * opts.tasks as u64) as f64 / secs,
        })
    })();
    stop.trigger();
    let _ = thread.join();
    let _ = std::fs::remove_file(&ipc_path);
    result
}
