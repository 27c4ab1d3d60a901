//! Where a Step's agent-side time goes, without sockets: decode, session handling (validation
//! + policy), encode. Run: `cargo run --release -p agent-server --example step_cost`.

use agent_server::bench::synthetic_step;
use agent_server::session::Session;
use agent_server::shared::Shared;
use malcolm_proto::bridge::{envelope::Body, Discipline, Hello, NodeSpec};
use malcolm_proto::codec::{decode_envelope, encode_envelope};
use malcolm_proto::envelope;
use std::time::Instant;

fn main() {
    let policy = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "round-robin".into());
    let shared = Shared::new(
        &policy,
        agent_server::registry::maker(malcolm_agents::AgentsConfig::default()),
    )
    .unwrap();
    shared.set_mode(malcolm_policies::Mode::Eval);
    let mut s = Session::new(1, shared);
    let hello = Hello {
        env_id: "x".into(),
        nodes: (0..64)
            .map(|i| NodeSpec {
                node_id: i,
                cores: 4,
                speed: 1.0,
                kind: "fast".into(),
                discipline: Discipline::Edf as i32,
            })
            .collect(),
        sth: Some(malcolm_proto::sth_config()),
        ..Default::default()
    };
    s.handle(envelope(0, Body::Hello(hello)));
    let n = 20_000u64;
    let msgs: Vec<Vec<u8>> = (0..n)
        .map(|i| encode_envelope(&envelope(i + 1, Body::Step(synthetic_step(64, 16, i)))))
        .collect();
    let (mut t_dec, mut t_handle, mut t_enc) = (0u128, 0u128, 0u128);
    for m in &msgs {
        let t0 = Instant::now();
        let env = decode_envelope(m, usize::MAX).unwrap();
        let t1 = Instant::now();
        let (reply, _) = s.handle(env);
        let t2 = Instant::now();
        let bytes = encode_envelope(&reply);
        let t3 = Instant::now();
        assert!(bytes.len() > 10);
        t_dec += (t1 - t0).as_nanos();
        t_handle += (t2 - t1).as_nanos();
        t_enc += (t3 - t2).as_nanos();
    }
    let per = |t: u128| t as f64 / n as f64 / 1e3;
    println!(
        "policy {policy}, {} bytes per Step: decode {:.2} us, handle {:.2} us, encode {:.2} us",
        msgs[0].len(),
        per(t_dec),
        per(t_handle),
        per(t_enc)
    );
}
