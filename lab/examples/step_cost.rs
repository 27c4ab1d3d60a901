//! Where a Step's agent-side time goes, without sockets: decode, session handling
//! (validation and policy), encode, for the same Step in protocol v1 (a GST copy per origin) and v2 (each
//! distinct GST once). Run: `cargo run --release -p malcolm-lab --example step_cost [POLICY]`.

use malcolm_policies::Mode;
use malcolm_proto::bridge::envelope::Body;
use malcolm_proto::codec::{encode_envelope, envelope, envelope_v};
use malcolm_serve::session::{Session, SessionConfig};
use malcolm_serve::shared::Shared;
use malcolm_serve::synthetic::{synthetic_hello, synthetic_step, to_v2};

/// CPU time of this thread, ns: what the work costs, whoever else runs on the machine.
fn thread_cpu_ns() -> u128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn main() {
    let policy = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "round-robin".into());
    for version in [1u32, 2] {
        let shared = Shared::new(
            &policy,
            malcolm_serve::registry::maker(malcolm_agents::AgentsConfig::default()),
        )
        .unwrap();
        shared.set_mode(Mode::Eval);
        let mut s = Session::new(1, shared, SessionConfig::default());
        let mut hello = synthetic_hello(64, "cost");
        hello.protocol_versions = vec![version];
        s.handle(&mut envelope(0, Body::Hello(hello)));
        let n = 20_000u64;
        let msgs: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let mut step = synthetic_step(64, 16, i);
                if version == 2 {
                    to_v2(&mut step);
                }
                encode_envelope(&envelope_v(version, i + 1, Body::Step(step)))
            })
            .collect();
        let (mut t_dec, mut t_handle, mut t_enc) = (0u128, 0u128, 0u128);
        let mut scratch = malcolm_proto::Envelope::default();
        let mut buf = Vec::new();
        for m in &msgs {
            // Decode alone (into reused buffers, as the session does), then the session's
            // whole path (decode + validation + policy), then the reply's encoding.
            let t0 = thread_cpu_ns();
            malcolm_proto::codec::decode_envelope_into(m, usize::MAX, &mut scratch).unwrap();
            let t1 = thread_cpu_ns();
            let (reply, _, _) = s.handle_bytes(m, usize::MAX);
            let t2 = thread_cpu_ns();
            malcolm_proto::codec::encode_envelope_into(&reply, &mut buf);
            let t3 = thread_cpu_ns();
            assert!(matches!(reply.body, Some(Body::Placement(_))), "{reply:?}");
            t_dec += t1 - t0;
            t_handle += t2 - t1;
            t_enc += t3 - t2;
        }
        let per = |t: u128| t as f64 / n as f64 / 1e3;
        println!(
            "policy {policy}, protocol v{version}, {} bytes per Step: decode {:.2} us; decode + session + policy {:.2} us; encode {:.2} us",
            msgs[0].len(),
            per(t_dec),
            per(t_handle),
            per(t_enc)
        );
    }
}
