//! The C ABI as a C caller uses it: open from flags, Hello/Step/EpisodeEnd/Close as encoded
//! envelopes, refused input answered with Error envelopes, checkpoints saved at close.

use malcolm_agent::{
    malcolm_agent_abi_version, malcolm_agent_call, malcolm_agent_close, malcolm_agent_open,
    malcolm_agent_stats, MalcolmAgent, MalcolmAgentStats, ABI_VERSION,
};
use malcolm_proto::bridge::{envelope::Body, Close, EpisodeEnd, ErrorCode};
use malcolm_proto::codec::{decode_envelope, encode_envelope, envelope};
use malcolm_proto::Envelope;
use malcolm_serve::synthetic::{synthetic_hello, synthetic_step};
use std::ffi::{c_char, CStr, CString};

const N: u32 = 8;

/// A Hello offering protocol version 1 only, as OMNeT++'s coordinator does.
fn hello(env_id: &str) -> malcolm_proto::bridge::Hello {
    malcolm_proto::bridge::Hello {
        protocol_versions: vec![1],
        ..synthetic_hello(N, env_id)
    }
}

fn open(flags: &str) -> Result<*mut MalcolmAgent, String> {
    let flags = CString::new(flags).unwrap();
    let mut err = [0 as c_char; 512];
    let a = unsafe { malcolm_agent_open(flags.as_ptr(), err.as_mut_ptr(), err.len()) };
    if a.is_null() {
        Err(unsafe { CStr::from_ptr(err.as_ptr()) }
            .to_string_lossy()
            .into_owned())
    } else {
        Ok(a)
    }
}

fn call_bytes(a: *mut MalcolmAgent, req: &[u8]) -> Envelope {
    let mut reply: *const u8 = std::ptr::null();
    let mut len = 0usize;
    let mut err = [0 as c_char; 256];
    let rc = unsafe {
        malcolm_agent_call(
            a,
            req.as_ptr(),
            req.len(),
            &mut reply,
            &mut len,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    assert_eq!(
        rc,
        0,
        "{}",
        unsafe { CStr::from_ptr(err.as_ptr()) }.to_string_lossy()
    );
    decode_envelope(
        unsafe { std::slice::from_raw_parts(reply, len) },
        usize::MAX,
    )
    .expect("reply decodes")
}

fn call(a: *mut MalcolmAgent, id: u64, body: Body) -> Envelope {
    call_bytes(a, &encode_envelope(&envelope(id, body)))
}

fn close(a: *mut MalcolmAgent) -> Result<(), String> {
    let mut err = [0 as c_char; 512];
    match unsafe { malcolm_agent_close(a, err.as_mut_ptr(), err.len()) } {
        0 => Ok(()),
        _ => Err(unsafe { CStr::from_ptr(err.as_ptr()) }
            .to_string_lossy()
            .into_owned()),
    }
}

fn error_code(e: &Envelope) -> Option<ErrorCode> {
    match &e.body {
        Some(Body::Error(err)) => Some(err.code()),
        _ => None,
    }
}

/// Steps `from..to` of episode 0, each answered with one target per task, on the rack.
fn steps(a: *mut MalcolmAgent, from: u64, to: u64) {
    for i in from..to {
        let r = call(a, 2 + i, Body::Step(synthetic_step(N, 3, i)));
        assert_eq!(r.request_id, 2 + i);
        let Some(Body::Placement(p)) = r.body else {
            panic!("Step {i}: {r:?}")
        };
        assert_eq!(p.targets.len(), 3);
        assert!(p.targets.iter().all(|&t| t < N));
    }
}

fn end_episode(a: *mut MalcolmAgent, steps: u64) {
    let end = EpisodeEnd {
        episode: 0,
        steps,
        sim_time_ns: steps * 2_000,
        ..Default::default()
    };
    let r = call(a, 10_000, Body::EpisodeEnd(end));
    assert!(matches!(r.body, Some(Body::Ack(_))), "{r:?}");
}

/// Hello, `n` Steps, EpisodeEnd.
fn episode(a: *mut MalcolmAgent, env_id: &str, n: u64) {
    let w = call(a, 1, Body::Hello(hello(env_id)));
    assert!(matches!(w.body, Some(Body::Welcome(_))), "{w:?}");
    steps(a, 0, n);
    end_episode(a, n);
}

#[test]
fn the_abi_version_is_the_headers() {
    let header = include_str!("../include/malcolm_agent.h");
    assert!(header.contains(&format!("#define MALCOLM_AGENT_ABI_VERSION {ABI_VERSION}u")));
    assert_eq!(malcolm_agent_abi_version(), ABI_VERSION);
}

#[test]
fn a_session_runs_through_the_abi_and_refuses_bad_input_without_ending() {
    let a = open("--policy round-robin").unwrap();
    // Before Hello a Step is a protocol violation; the agent keeps going.
    let early = call(a, 1, Body::Step(synthetic_step(N, 2, 0)));
    assert_eq!(error_code(&early), Some(ErrorCode::ProtocolViolation));
    let w = call(a, 1, Body::Hello(hello("ffi-env")));
    assert!(matches!(w.body, Some(Body::Welcome(_))), "{w:?}");
    steps(a, 0, 10);
    // Garbage bytes, and a Step naming a node the rack does not have: Error replies.
    assert_eq!(
        error_code(&call_bytes(a, &[0xff, 0xff, 0xff, 0x07, 1, 2])),
        Some(ErrorCode::Malformed)
    );
    let mut bad = synthetic_step(N, 3, 10);
    bad.tasks[0].origin = N + 5;
    assert_eq!(
        error_code(&call(a, 300, Body::Step(bad))),
        Some(ErrorCode::InvalidNodeId)
    );
    // Still serving: the same Step, valid, is answered, and the episode goes on.
    steps(a, 10, 20);
    end_episode(a, 20);
    assert!(matches!(
        call(
            a,
            302,
            Body::Close(Close {
                reason: "done".into()
            })
        )
        .body,
        Some(Body::Ack(_))
    ));
    // After Close, a new Hello starts a new session on the same handle.
    episode(a, "ffi-env", 3);
    close(a).unwrap();
}

#[test]
fn bad_flags_are_refused_with_the_reason() {
    let e = open("--policy round-robin --mode sideways").unwrap_err();
    assert!(e.contains("sideways"), "{e}");
    let e = open("--policy no-such-policy").unwrap_err();
    assert!(e.contains("no-such-policy"), "{e}");
    let e = open("--bind tcp://127.0.0.1:1").unwrap_err();
    assert!(e.contains("--bind"), "{e}");
}

#[test]
fn a_learner_checkpoint_is_saved_at_close_and_loaded_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("agent.safetensors");
    let flags = format!(
        "--policy malcolm-strict --mode train --checkpoint {}",
        ckpt.display()
    );
    let a = open(&flags).unwrap();
    episode(a, "ffi-train", 40);
    close(a).unwrap();
    let bytes = std::fs::read(&ckpt).expect("checkpoint written at close");
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    // Reopened in eval mode from that file, which an evaluating run leaves as it was (runs in
    // parallel may read it).
    let saved = std::fs::metadata(&ckpt).unwrap().modified().unwrap();
    let a = open(&flags.replace("train", "eval")).unwrap();
    let w = call(a, 1, Body::Hello(hello("ffi-eval")));
    let Some(Body::Welcome(w)) = w.body else {
        panic!("{w:?}")
    };
    assert_eq!(w.mode_name, "eval");
    steps(a, 0, 5);
    close(a).unwrap();
    assert_eq!(std::fs::metadata(&ckpt).unwrap().modified().unwrap(), saved);
    assert_eq!(std::fs::read(&ckpt).unwrap(), bytes);
    // A checkpoint that cannot be written (its folder is a file): close says why.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let a = open(&format!(
        "--policy malcolm-strict --checkpoint {}/a.safetensors",
        blocker.display()
    ))
    .unwrap();
    episode(a, "ffi-fail", 5);
    let e = close(a).unwrap_err();
    assert!(e.contains("not-a-dir"), "{e}");
}

fn stats(a: *mut MalcolmAgent) -> MalcolmAgentStats {
    let mut s = MalcolmAgentStats::default();
    assert_eq!(unsafe { malcolm_agent_stats(a, &mut s) }, 0);
    s
}

#[test]
fn stats_count_steps_decisions_refusals_and_the_learners_work() {
    let a = open("--policy round-robin").unwrap();
    assert_eq!(stats(a), MalcolmAgentStats::default());
    episode(a, "ffi-stats", 7);
    assert_eq!(
        error_code(&call_bytes(a, &[0xff, 0xff, 0xff, 0x07])),
        Some(ErrorCode::Malformed)
    );
    let s = stats(a);
    assert_eq!((s.steps, s.decisions, s.errors), (7, 21, 1));
    assert_eq!(s.learner_updates, 0);
    close(a).unwrap();
    // A learner: every decision becomes a transition once its outcome and successor are in.
    let a = open("--policy malcolm-strict --mode train").unwrap();
    episode(a, "ffi-stats-learner", 30);
    let s = stats(a);
    assert_eq!((s.steps, s.decisions), (30, 90));
    assert_eq!(s.transitions_dropped, 0);
    assert!(s.transitions_inserted <= 90, "{s:?}");
    close(a).unwrap();
}

#[test]
fn null_pointers_are_errors_not_crashes() {
    let mut err = [0 as c_char; 128];
    let mut reply: *const u8 = std::ptr::null();
    let mut len = 0usize;
    let rc = unsafe {
        malcolm_agent_call(
            std::ptr::null_mut(),
            [1u8].as_ptr(),
            1,
            &mut reply,
            &mut len,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    assert_eq!(rc, 1);
    assert!(unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .contains("null"));
    assert_eq!(
        unsafe { malcolm_agent_close(std::ptr::null_mut(), err.as_mut_ptr(), err.len()) },
        0
    );
    let mut s = MalcolmAgentStats::default();
    assert_eq!(unsafe { malcolm_agent_stats(std::ptr::null(), &mut s) }, 1);
}

#[test]
fn replies_carry_the_versions_the_protocol_defines() {
    use malcolm_proto::codec::{envelope_v, PROTOCOL_V1, PROTOCOL_V2};
    use malcolm_serve::synthetic::to_v2;
    let a = open("--policy round-robin").unwrap();
    // Offering 1 and 2: the Welcome chooses 2 but, as the Hello's reply, travels as v1.
    let w = call(a, 1, Body::Hello(synthetic_hello(N, "ffi-v2")));
    assert_eq!(w.protocol_version, PROTOCOL_V1);
    let Some(Body::Welcome(welcome)) = &w.body else {
        panic!("{w:?}")
    };
    assert_eq!(welcome.protocol_version, PROTOCOL_V2);
    let mut step = synthetic_step(N, 3, 0);
    to_v2(&mut step);
    let v2 = |id, body| call_bytes(a, &encode_envelope(&envelope_v(PROTOCOL_V2, id, body)));
    let p = v2(2, Body::Step(step));
    assert!(matches!(p.body, Some(Body::Placement(_))), "{p:?}");
    assert_eq!(p.protocol_version, PROTOCOL_V2);
    // A v1 envelope in a v2 session: refused, in the session's version.
    let e = call(a, 3, Body::Step(synthetic_step(N, 3, 1)));
    assert_eq!(error_code(&e), Some(ErrorCode::VersionMismatch));
    assert_eq!(e.protocol_version, PROTOCOL_V2);
    // The Close ends the session; its Ack is still part of it.
    let ack = v2(
        4,
        Body::Close(Close {
            reason: "done".into(),
        }),
    );
    assert!(matches!(ack.body, Some(Body::Ack(_))), "{ack:?}");
    assert_eq!(ack.protocol_version, PROTOCOL_V2);
    close(a).unwrap();
}
