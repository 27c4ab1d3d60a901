//! # Layout
//!
//! `libmalcolm_agent.so`: the agent server's session behind a C ABI
//! (`include/malcolm_agent.h`), for environments that call the agent in process. OMNeT++'s
//! `BridgeCoordinator` loads it when its `agentEndpoint` reads `embedded:<flags>`; every Step
//! is then one function call on the simulation's thread instead of a ZeroMQ round trip
//! across six threads. The bytes and the behaviour are the server's
//! ([`malcolm_serve::embedded::EmbeddedAgent`]); this crate only converts at the boundary:
//! C strings in, error text out, panics caught, no unwinding into C++.

use malcolm_serve::embedded::EmbeddedAgent;
use std::ffi::{c_char, c_int, CStr};
use std::io::IsTerminal;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `MALCOLM_AGENT_ABI_VERSION` of the header.
pub const ABI_VERSION: u32 = 1;

/// Log filter when `MALCOLM_LOG` is unset: warnings only, so a simulation's output stays its
/// own (the server's default is `info`).
const DEFAULT_LOG: &str = "warn";

/// `MalcolmAgentStats` of the header.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct MalcolmAgentStats {
    pub steps: u64,
    pub decisions: u64,
    pub placed_behind_paused: u64,
    pub errors: u64,
    pub learner_updates: u64,
    pub transitions_inserted: u64,
    pub transitions_dropped: u64,
    pub samples_per_insert: f64,
    pub env_wait_s: f64,
}

/// An agent as the C side holds it.
pub struct MalcolmAgent {
    inner: EmbeddedAgent,
}

/// The ABI version this library implements.
#[no_mangle]
pub extern "C" fn malcolm_agent_abi_version() -> u32 {
    ABI_VERSION
}

/// # Safety
/// `flags` is NUL-terminated (or NULL: the defaults); `err` has room for `err_len` bytes
/// (or is NULL).
#[no_mangle]
pub unsafe extern "C" fn malcolm_agent_open(
    flags: *const c_char,
    err: *mut c_char,
    err_len: usize,
) -> *mut MalcolmAgent {
    init_logging();
    let flags = if flags.is_null() {
        String::new()
    } else {
        match CStr::from_ptr(flags).to_str() {
            Ok(s) => s.to_string(),
            Err(_) => {
                write_err(err, err_len, "embedded agent flags are not UTF-8");
                return std::ptr::null_mut();
            }
        }
    };
    match catch_unwind(|| EmbeddedAgent::open(&flags)) {
        Ok(Ok(inner)) => Box::into_raw(Box::new(MalcolmAgent { inner })),
        Ok(Err(e)) => {
            write_err(err, err_len, &e.to_string());
            std::ptr::null_mut()
        }
        Err(p) => {
            write_err(err, err_len, &panic_text("opening the agent", &p));
            std::ptr::null_mut()
        }
    }
}

/// # Safety
/// `agent` comes from [`malcolm_agent_open`] and is used by one thread at a time; `request`
/// points at `request_len` readable bytes; `reply` and `reply_len` are writable.
#[no_mangle]
pub unsafe extern "C" fn malcolm_agent_call(
    agent: *mut MalcolmAgent,
    request: *const u8,
    request_len: usize,
    reply: *mut *const u8,
    reply_len: *mut usize,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    if agent.is_null() || reply.is_null() || reply_len.is_null() {
        write_err(
            err,
            err_len,
            "malcolm_agent_call: null agent or reply pointer",
        );
        return 1;
    }
    let request = if request_len == 0 {
        &[][..]
    } else if request.is_null() {
        write_err(err, err_len, "malcolm_agent_call: null request");
        return 1;
    } else {
        std::slice::from_raw_parts(request, request_len)
    };
    let agent = &mut *agent;
    match catch_unwind(AssertUnwindSafe(|| {
        let r = agent.inner.call(request);
        (r.as_ptr(), r.len())
    })) {
        Ok((ptr, len)) => {
            *reply = ptr;
            *reply_len = len;
            0
        }
        Err(p) => {
            write_err(err, err_len, &panic_text("deciding", &p));
            1
        }
    }
}

/// # Safety
/// `agent` comes from [`malcolm_agent_open`]; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn malcolm_agent_stats(
    agent: *const MalcolmAgent,
    out: *mut MalcolmAgentStats,
) -> c_int {
    if agent.is_null() || out.is_null() {
        return 1;
    }
    let s = (*agent).inner.stats();
    *out = MalcolmAgentStats {
        steps: s.steps,
        decisions: s.decisions,
        placed_behind_paused: s.placed_behind_paused,
        errors: s.errors,
        learner_updates: s.learner.updates,
        transitions_inserted: s.learner.transitions_inserted,
        transitions_dropped: s.learner.transitions_dropped,
        samples_per_insert: s.learner.samples_per_insert,
        env_wait_s: s.learner.env_wait_s,
    };
    0
}

/// # Safety
/// `agent` comes from [`malcolm_agent_open`] (or is NULL) and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn malcolm_agent_close(
    agent: *mut MalcolmAgent,
    err: *mut c_char,
    err_len: usize,
) -> c_int {
    if agent.is_null() {
        return 0;
    }
    let agent = Box::from_raw(agent);
    match catch_unwind(AssertUnwindSafe(|| agent.inner.close())) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            write_err(err, err_len, &e.to_string());
            1
        }
        Err(p) => {
            write_err(err, err_len, &panic_text("closing the agent", &p));
            1
        }
    }
}

/// Logs to stderr with `MALCOLM_LOG` as the filter, unless the host process already set a
/// subscriber (a Rust host calling this library as a crate).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MALCOLM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

fn panic_text(what: &str, p: &Box<dyn std::any::Any + Send>) -> String {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("embedded agent panicked while {what}: {msg}")
}

/// Copies `msg` into the caller's buffer, truncated at a character boundary, NUL-terminated.
unsafe fn write_err(err: *mut c_char, err_len: usize, msg: &str) {
    if err.is_null() || err_len == 0 {
        return;
    }
    let mut n = msg.len().min(err_len - 1);
    while !msg.is_char_boundary(n) {
        n -= 1;
    }
    std::ptr::copy_nonoverlapping(msg.as_ptr(), err.cast::<u8>(), n);
    *err.add(n) = 0;
}
