//! The agent inside the environment's process: one [`Session`] answering request bytes with
//! reply bytes on the caller's thread, for the C ABI of `malcolm-agent-ffi` that OMNeT++'s
//! coordinator loads instead of connecting over ZeroMQ (`agentEndpoint = "embedded:..."`).
//!
//! Over ZeroMQ every Step crosses six threads (the simulation, its ZeroMQ I/O thread, the
//! server's I/O thread, router, worker and back); on a small machine those hand-offs cost
//! more than the simulation between two Steps. Embedded, a Step is one function call. The
//! bytes, the validation and the policy are those of the server: the same [`Session`].

use crate::registry::PolicyArgs;
use crate::server::{load_existing_checkpoint, parse_mode, save_final, ServerError};
use crate::session::{After, Session, SessionConfig};
use crate::shared::{Counters, Shared};
use clap::Parser;
use malcolm_policies::{LearnerStatus, Mode};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// The flags of an embedded agent (a subset of `agent-server serve`'s: no sockets, no
/// control plane), given after `embedded:` in the coordinator's `agentEndpoint`.
#[derive(Parser, Debug, Clone)]
#[command(name = "embedded", no_binary_name = true)]
pub struct EmbeddedArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Initial mode: train (explore and learn), eval (greedy), frozen (greedy, never updated).
    #[arg(long, default_value = "train", value_parser = parse_mode)]
    pub mode: Mode,
    /// Checkpoint loaded at start when the file exists, and saved at close in train mode
    /// (an evaluating run has nothing new to save, and parallel runs may share the file).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Largest request answered normally (larger: an OVERSIZED error reply).
    #[arg(long, default_value_t = malcolm_proto::codec::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
}

/// Why an embedded agent could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("embedded agent flags: {0}")]
    Args(String),
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// What an embedded agent has done, for the env to record with its results.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedStats {
    pub steps: u64,
    pub decisions: u64,
    pub placed_behind_paused: u64,
    pub errors: u64,
    pub learner: LearnerStatus,
}

/// One env's agent, called in lockstep on the env's thread.
pub struct EmbeddedAgent {
    session: Session,
    shared: Arc<Shared>,
    /// Where to save at close (train mode only).
    checkpoint: Option<PathBuf>,
    max_message_bytes: usize,
    reply: Vec<u8>,
    closed: bool,
}

impl EmbeddedAgent {
    /// Parses `flags` (whitespace-separated, as on the command line: no quoting) and makes
    /// the policy, loading the checkpoint when it exists.
    pub fn open(flags: &str) -> Result<Self, EmbeddedError> {
        let args = EmbeddedArgs::try_parse_from(flags.split_whitespace())
            .map_err(|e| EmbeddedError::Args(e.render().to_string().trim().to_string()))?;
        Self::with_args(args)
    }

    pub fn with_args(a: EmbeddedArgs) -> Result<Self, EmbeddedError> {
        let shared = a.policy.shared()?;
        load_existing_checkpoint(&shared, a.checkpoint.as_deref())?;
        shared.set_mode(a.mode);
        let save_to = a.checkpoint.filter(|_| a.mode == Mode::Train);
        let config = SessionConfig {
            max_message_bytes: a.max_message_bytes,
            ..SessionConfig::default()
        };
        Ok(Self {
            session: Session::new(1, shared.clone(), config),
            shared,
            checkpoint: save_to,
            max_message_bytes: a.max_message_bytes,
            reply: Vec::new(),
            closed: false,
        })
    }

    /// Answers one request (an encoded `Envelope`) with the reply bytes, valid until the next
    /// call. Undecodable or refused requests get an `Error` envelope, as over ZeroMQ. After a
    /// `Close` the next request starts a new session (a new Hello is needed).
    pub fn call(&mut self, request: &[u8]) -> &[u8] {
        if self.closed {
            self.session = self.session.successor();
            self.closed = false;
        }
        let received = Instant::now();
        let (env, after, is_step) = self.session.handle_bytes(request, self.max_message_bytes);
        malcolm_proto::codec::encode_envelope_into(&env, &mut self.reply);
        if is_step {
            self.shared
                .record_decide_ns(received.elapsed().as_nanos() as u64);
        }
        self.closed = after == After::Closed;
        &self.reply
    }

    /// The state shared with the policy (counters, decision latency).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn stats(&self) -> EmbeddedStats {
        let c = &self.shared.counters;
        EmbeddedStats {
            steps: Counters::get(&c.steps),
            decisions: Counters::get(&c.decisions),
            placed_behind_paused: Counters::get(&c.placed_behind_paused),
            errors: Counters::get(&c.errors),
            learner: self.shared.active().1.status(),
        }
    }

    /// Saves the checkpoint when one was named in train mode (a policy with nothing to save
    /// is fine) and logs what the agent did.
    pub fn close(self) -> Result<(), EmbeddedError> {
        let (p50, p99, n) = self.shared.take_decide_percentiles();
        let learner = self.shared.active().1.status();
        tracing::info!(
            steps = n,
            decide_p50_us = p50 as f64 / 1e3,
            decide_p99_us = p99 as f64 / 1e3,
            updates = learner.updates,
            transitions = learner.transitions_inserted,
            dropped = learner.transitions_dropped,
            samples_per_insert = learner.samples_per_insert,
            env_wait_s = learner.env_wait_s,
            "embedded agent closing"
        );
        match &self.checkpoint {
            Some(path) => Ok(save_final(&self.shared, path)?),
            None => Ok(()),
        }
    }
}
