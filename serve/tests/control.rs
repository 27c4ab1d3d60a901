//! The gRPC control plane against a running server with a real learner and real envs over
//! ZeroMQ: status, mode switch, checkpoint save/load, policy switch, health, metrics stream.

mod common;

use common::{bind_loopback_tcp, small_learner_shared};
use malcolm_proto::bridge::Mode;
use malcolm_proto::control::agent_control_client::AgentControlClient;
use malcolm_proto::control::*;
use malcolm_serve::bridge::Shutdown;
use malcolm_serve::server::{self, ServeOptions};
use rack_sim::{run_env_loop, RackSim, ZmqEnvClient};
use std::time::Duration;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_steers_a_server_while_envs_run() {
    let shared = small_learner_shared("malcolm-strict");
    let ctx = zmq::Context::new();
    let bridge = bind_loopback_tcp(&ctx, 2);
    let endpoint = bridge.endpoints()[0].clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run(
        bridge,
        listener,
        shared.clone(),
        ServeOptions::default(),
        async {
            let _ = stop_rx.await;
        },
    ));

    // Two envs keep stepping short episodes until told to stop.
    let envs_stop = Shutdown::new();
    let envs: Vec<_> = (0..2u64)
        .map(|e| {
            let (ep, stop) = (endpoint.clone(), envs_stop.clone());
            std::thread::spawn(move || {
                let mut episodes = 0;
                let scenario = rack_sim::by_name("hetero:tasks=1500,warmup=100").unwrap();
                while !stop.is_triggered() {
                    let mut sim =
                        RackSim::new(scenario.clone(), 100 + e * 1000 + episodes).unwrap();
                    let mut c = ZmqEnvClient::connect(&ep, Duration::from_secs(20)).unwrap();
                    run_env_loop(&mut sim, &mut c, &format!("env-{e}"), 1).unwrap();
                    episodes += 1;
                }
                episodes
            })
        })
        .collect();

    let mut client = AgentControlClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    // Envs connect and decisions flow.
    let t0 = std::time::Instant::now();
    let status = loop {
        let s = client
            .get_status(GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.decisions_total > 2000 && s.learner_updates > 0 {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(60), "no progress: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.policy, "malcolm-strict");
    assert_eq!(status.mode, Mode::Train as i32);
    assert!(status.replay_len > 0 && status.replay_capacity >= status.replay_len);

    // Mode switch.
    let s = client
        .set_mode(SetModeRequest {
            mode: Mode::Eval as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.mode, Mode::Eval as i32);
    assert!(client
        .set_mode(SetModeRequest { mode: 0 })
        .await
        .is_err_and(|e| e.code() == tonic::Code::InvalidArgument));

    // Checkpoint save and load while envs run; a missing file is refused.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.safetensors");
    let saved = client
        .save_checkpoint(CheckpointRequest {
            path: path.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(saved.bytes > 1000 && path.exists(), "{saved:?}");
    let loaded = client
        .load_checkpoint(CheckpointRequest {
            path: path.display().to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loaded.policy_version, saved.policy_version);
    let err = client
        .load_checkpoint(CheckpointRequest {
            path: dir.path().join("nope").display().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    // Metrics stream: two samples with the decision latency of live envs.
    let mut stream = client
        .stream_metrics(StreamMetricsRequest { interval_ms: 200 })
        .await
        .unwrap()
        .into_inner();
    for _ in 0..2 {
        let m = stream.message().await.unwrap().unwrap();
        assert!(m.status.is_some());
        assert!(m.decide_p50_us > 0.0, "{m:?}");
    }
    drop(stream);

    // Standard health service.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let h = health
        .check(HealthCheckRequest {
            service: "malcolm.control.v1.AgentControl".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(h.status, 1, "SERVING");

    // Policy switch: sessions pick it up at their next Step; unknown names are refused.
    let s = client
        .set_policy(SetPolicyRequest {
            policy: "po2".into(),
            checkpoint: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.policy, "power-of-d");
    assert!(client
        .set_policy(SetPolicyRequest {
            policy: "no-such".into(),
            checkpoint: String::new(),
        })
        .await
        .is_err());
    let before = client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = client
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        after.decisions_total > before.decisions_total,
        "envs keep running"
    );
    assert_eq!(after.errors_total, 0);

    envs_stop.trigger();
    for e in envs {
        assert!(
            tokio::task::spawn_blocking(move || e.join().unwrap())
                .await
                .unwrap()
                >= 1
        );
    }
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
