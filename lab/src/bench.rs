//! `bench bridge`: the round trip of a Step through the real bridge (ROUTER, session,
//! validation, policy, reply) next to the raw floor, a bare ZeroMQ ROUTER that answers each
//! Step with a canned Placement, over ipc:// and tcp:// loopback. The two are alternated Step
//! by Step in one run, with the same bytes, so both see the same machine; the ratio of their
//! medians is the bridge's cost over the transport. Also the throughput of several envs at
//! once.

use hdrhistogram::Histogram;
use malcolm_proto::bridge::{envelope::Body, Placement};
use malcolm_proto::codec::{
    decode_envelope, encode_envelope, envelope, envelope_v, DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_V1,
    PROTOCOL_V2,
};
use malcolm_serve::bridge::{Bridge, BridgeConfig, Shutdown};
use malcolm_serve::shared::Shared;
use malcolm_serve::synthetic::{synthetic_hello, synthetic_step, to_v2};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a bench env waits for any reply before it reports the server as stuck.
const REPLY_TIMEOUT_MS: i32 = 10_000;

#[derive(Debug, Clone)]
pub struct BridgeBenchOptions {
    pub nodes: u32,
    pub tasks: u32,
    /// Timed round trips per transport and protocol, for each of bridge and floor.
    pub round_trips: u32,
    /// Concurrent envs for the throughput figure.
    pub envs: u32,
    pub throughput_for: Duration,
    /// Bridge worker threads (0 = every session on the router thread).
    pub workers: usize,
    /// Protocol versions to measure.
    pub protocols: Vec<u32>,
}

impl BridgeBenchOptions {
    pub fn full() -> Self {
        Self {
            nodes: 64,
            tasks: 16,
            round_trips: 20_000,
            envs: 4,
            throughput_for: Duration::from_secs(3),
            workers: malcolm_serve::bridge::default_workers(),
            protocols: vec![PROTOCOL_V1, PROTOCOL_V2],
        }
    }
    pub fn quick() -> Self {
        Self {
            round_trips: 1_000,
            throughput_for: Duration::from_millis(300),
            ..Self::full()
        }
    }
}

/// Round-trip percentiles of one path, microseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LatencyFigure {
    pub p50_us: f64,
    pub p99_us: f64,
    pub mean_us: f64,
}

impl LatencyFigure {
    fn of(h: &Histogram<u64>) -> Self {
        Self {
            p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
            mean_us: h.mean() / 1e3,
        }
    }
}

/// The bridge and the floor for one transport and protocol, measured alternately.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PairFigure {
    pub transport: String,
    pub protocol: u32,
    pub step_bytes: usize,
    pub bridge: LatencyFigure,
    pub floor: LatencyFigure,
    /// bridge p50 / floor p50.
    pub ratio_p50: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BridgeBenchReport {
    pub policy: String,
    pub nodes: u32,
    pub tasks: u32,
    pub round_trips: u32,
    pub pairs: Vec<PairFigure>,
    pub envs: u32,
    pub steps_per_second: f64,
    pub decisions_per_second: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Bridge(#[from] malcolm_serve::bridge::BridgeError),
    #[error("zeromq {what}: {source}")]
    Zmq {
        what: &'static str,
        source: zmq::Error,
    },
    #[error("bench env: {0}")]
    Env(String),
}

fn z(what: &'static str) -> impl FnOnce(zmq::Error) -> BenchError {
    move |source| BenchError::Zmq { what, source }
}

/// A DEALER with bounded waits.
fn dealer(ctx: &zmq::Context, endpoint: &str) -> Result<zmq::Socket, BenchError> {
    let sock = ctx.socket(zmq::DEALER).map_err(z("socket"))?;
    sock.set_linger(0).map_err(z("linger"))?;
    sock.set_rcvtimeo(REPLY_TIMEOUT_MS).map_err(z("rcvtimeo"))?;
    sock.set_sndtimeo(REPLY_TIMEOUT_MS).map_err(z("sndtimeo"))?;
    sock.connect(endpoint).map_err(z("connect"))?;
    Ok(sock)
}

/// Sends `bytes` and waits for the reply, which must decode and be no Error.
fn call(sock: &zmq::Socket, bytes: &[u8]) -> Result<Body, BenchError> {
    sock.send(bytes, 0).map_err(z("send"))?;
    let reply = sock.recv_bytes(0).map_err(|e| {
        if e == zmq::Error::EAGAIN {
            BenchError::Env(format!("no reply within {} s", REPLY_TIMEOUT_MS / 1000))
        } else {
            BenchError::Zmq {
                what: "recv",
                source: e,
            }
        }
    })?;
    let env = decode_envelope(&reply, DEFAULT_MAX_MESSAGE_BYTES)
        .map_err(|e| BenchError::Env(e.to_string()))?;
    match env.body {
        Some(Body::Error(e)) => Err(BenchError::Env(format!(
            "the server refused a request: {}",
            e.message
        ))),
        Some(b) => Ok(b),
        None => Err(BenchError::Env("an empty reply".into())),
    }
}

/// An env session with the bridge: Hello offering `protocol`, then Steps.
struct BenchEnv {
    sock: zmq::Socket,
    protocol: u32,
    next_id: u64,
    next_step: u64,
    nodes: u32,
    tasks: u32,
}

impl BenchEnv {
    fn connect(
        ctx: &zmq::Context,
        endpoint: &str,
        o: &BridgeBenchOptions,
        protocol: u32,
        name: &str,
    ) -> Result<Self, BenchError> {
        let sock = dealer(ctx, endpoint)?;
        let mut hello = synthetic_hello(o.nodes, name);
        hello.protocol_versions = vec![protocol];
        match call(&sock, &encode_envelope(&envelope(1, Body::Hello(hello))))? {
            Body::Welcome(w) if w.protocol_version.max(1) == protocol => {}
            other => {
                return Err(BenchError::Env(format!(
                    "Hello for protocol v{protocol} got {other:?}"
                )))
            }
        }
        Ok(Self {
            sock,
            protocol,
            next_id: 2,
            next_step: 0,
            nodes: o.nodes,
            tasks: o.tasks,
        })
    }

    /// Ends the session politely.
    fn close(mut self) -> Result<(), BenchError> {
        let bytes = encode_envelope(&envelope_v(
            self.protocol,
            self.next_id,
            Body::Close(malcolm_proto::bridge::Close {
                reason: "benchmark done".into(),
            }),
        ));
        self.next_id += 1;
        call(&self.sock, &bytes).map(|_| ())
    }

    /// The next Step of the session, encoded.
    fn next_bytes(&mut self) -> Vec<u8> {
        let mut step = synthetic_step(self.nodes, self.tasks, self.next_step);
        if self.protocol >= PROTOCOL_V2 {
            to_v2(&mut step);
        }
        let b = encode_envelope(&envelope_v(self.protocol, self.next_id, Body::Step(step)));
        self.next_id += 1;
        self.next_step += 1;
        b
    }
}

/// A bare ROUTER answering every message with the same pre-encoded Placement, on its own
/// thread, until `stop`.
fn canned_router(
    ctx: &zmq::Context,
    endpoint: &str,
    tasks: u32,
    stop: Shutdown,
) -> Result<(String, std::thread::JoinHandle<Result<(), zmq::Error>>), BenchError> {
    let router = ctx.socket(zmq::ROUTER).map_err(z("socket"))?;
    router.set_linger(0).map_err(z("linger"))?;
    router.bind(endpoint).map_err(z("bind floor"))?;
    let ep = router
        .get_last_endpoint()
        .map_err(z("last endpoint"))?
        .unwrap_or_else(|_| endpoint.to_string());
    let canned = encode_envelope(&envelope(
        0,
        Body::Placement(Placement {
            step_index: 0,
            targets: (0..tasks).collect(),
            ..Default::default()
        }),
    ));
    let h = std::thread::Builder::new()
        .name("bench-floor".into())
        .spawn(move || -> Result<(), zmq::Error> {
            while !stop.is_triggered() {
                if router.poll(zmq::POLLIN, 50)? == 0 {
                    continue;
                }
                while let Ok(mut parts) = router.recv_multipart(zmq::DONTWAIT) {
                    parts.pop();
                    parts.push(canned.clone());
                    router.send_multipart(parts, 0)?;
                }
            }
            Ok(())
        })
        .map_err(|e| BenchError::Env(e.to_string()))?;
    Ok((ep, h))
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).expect("bounds")
}

/// One transport and protocol: bridge and floor alternated Step by Step.
fn pair(
    ctx: &zmq::Context,
    transport: &str,
    bridge_ep: &str,
    floor_ep: &str,
    o: &BridgeBenchOptions,
    protocol: u32,
) -> Result<PairFigure, BenchError> {
    let mut env = BenchEnv::connect(
        ctx,
        bridge_ep,
        o,
        protocol,
        &format!("bench-{transport}-v{protocol}"),
    )?;
    let floor = dealer(ctx, floor_ep)?;
    let (mut hb, mut hf) = (histogram(), histogram());
    let warmup = (o.round_trips / 10).max(50);
    let mut size = 0;
    for i in 0..warmup + o.round_trips {
        let bytes = env.next_bytes();
        size = bytes.len();
        // Alternate which goes first, so neither always follows the other's wake-up.
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for to_bridge in order {
            let t0 = Instant::now();
            if to_bridge {
                call(&env.sock, &bytes)?;
            } else {
                call(&floor, &bytes)?;
            }
            let ns = t0.elapsed().as_nanos() as u64;
            if i >= warmup {
                if to_bridge {
                    hb.saturating_record(ns);
                } else {
                    hf.saturating_record(ns);
                }
            }
        }
    }
    env.close()?;
    let (bridge, floor) = (LatencyFigure::of(&hb), LatencyFigure::of(&hf));
    Ok(PairFigure {
        transport: transport.to_string(),
        protocol,
        step_bytes: size,
        ratio_p50: bridge.p50_us / floor.p50_us,
        bridge,
        floor,
    })
}

/// Runs the benchmark against a bridge serving `shared`'s active policy.
pub fn bridge_bench(
    shared: Arc<Shared>,
    opts: &BridgeBenchOptions,
) -> Result<BridgeBenchReport, BenchError> {
    let ctx = zmq::Context::new();
    let dir = tempfile::tempdir().map_err(|e| BenchError::Env(e.to_string()))?;
    let bridge = Bridge::bind(
        &ctx,
        BridgeConfig {
            endpoints: vec![
                format!("ipc://{}", dir.path().join("bridge.sock").display()),
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
    let floors = [
        canned_router(
            &ctx,
            &format!("ipc://{}", dir.path().join("floor.sock").display()),
            opts.tasks,
            stop.clone(),
        ),
        canned_router(&ctx, "tcp://127.0.0.1:*", opts.tasks, stop.clone()),
    ];
    let result = (|| -> Result<_, BenchError> {
        let mut floor_eps = Vec::new();
        let mut handles = Vec::new();
        for f in floors {
            let (ep, h) = f?;
            floor_eps.push(ep);
            handles.push(h);
        }
        let mut pairs = Vec::new();
        for &protocol in &opts.protocols {
            for (k, transport) in ["ipc", "tcp"].into_iter().enumerate() {
                pairs.push(pair(
                    &ctx,
                    transport,
                    &endpoints[k],
                    &floor_eps[k],
                    opts,
                    protocol,
                )?);
            }
        }
        // Throughput: several envs in lockstep at once over ipc, the last protocol.
        let protocol = *opts.protocols.last().unwrap_or(&PROTOCOL_V2);
        let deadline = Instant::now() + opts.throughput_for;
        let workers: Vec<_> = (0..opts.envs)
            .map(|e| {
                let (ctx, ep, o) = (ctx.clone(), endpoints[0].clone(), opts.clone());
                std::thread::spawn(move || -> Result<u64, BenchError> {
                    let mut env = BenchEnv::connect(&ctx, &ep, &o, protocol, &format!("tput-{e}"))?;
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let bytes = env.next_bytes();
                        call(&env.sock, &bytes)?;
                        i += 1;
                    }
                    env.close()?;
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
        Ok((pairs, steps, secs, handles))
    })();
    stop.trigger();
    let bridge_result = thread.join();
    let (pairs, steps, secs, handles) = result?;
    for h in handles {
        h.join()
            .map_err(|_| BenchError::Env("floor thread panicked".into()))?
            .map_err(z("floor"))?;
    }
    bridge_result.map_err(|_| BenchError::Env("bridge thread panicked".into()))??;
    Ok(BridgeBenchReport {
        policy: shared.policy_name(),
        nodes: opts.nodes,
        tasks: opts.tasks,
        round_trips: opts.round_trips,
        pairs,
        envs: opts.envs,
        steps_per_second: steps as f64 / secs,
        decisions_per_second: (steps * opts.tasks as u64) as f64 / secs,
    })
}

impl BridgeBenchReport {
    /// The table `agent-server bench bridge` prints.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut s = format!(
            "Step round trip, {}-node rack, {} tasks per Step, policy {}: the bridge against a \
             bare ROUTER answering a canned Placement, alternated Step by Step ({} each):\n",
            self.nodes, self.tasks, self.policy, self.round_trips
        );
        let _ = writeln!(
            s,
            "{:<10} {:>8} {:>8} | {:>10} {:>10} | {:>10} {:>10} | {:>7}",
            "transport", "protocol", "bytes", "bridge p50", "p99", "floor p50", "p99", "ratio"
        );
        for p in &self.pairs {
            let _ = writeln!(
                s,
                "{:<10} {:>8} {:>8} | {:>8.1}us {:>8.1}us | {:>8.1}us {:>8.1}us | {:>6.2}x",
                p.transport,
                format!("v{}", p.protocol),
                p.step_bytes,
                p.bridge.p50_us,
                p.bridge.p99_us,
                p.floor.p50_us,
                p.floor.p99_us,
                p.ratio_p50
            );
        }
        let _ = writeln!(
            s,
            "{} concurrent envs over ipc: {:.0} steps/s, {:.0} decisions/s",
            self.envs, self.steps_per_second, self.decisions_per_second
        );
        s
    }
}
