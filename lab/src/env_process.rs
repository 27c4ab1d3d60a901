//! The embedded rack simulator as an environment process (`agent-server env`): what an
//! OMNeT++ run does, without OMNeT++. Each episode is a session of its own against the
//! server, with its own seed.

use rack_sim::{RackSim, Report, ZmqEnvClient};
use std::path::PathBuf;
use std::time::Duration;

/// `agent-server env`.
#[derive(clap::Args, Debug, Clone)]
pub struct EnvArgs {
    /// Agent server ZeroMQ endpoint.
    #[arg(long, env = "MALCOLM_AGENT", default_value = "tcp://127.0.0.1:5555")]
    pub connect: String,
    /// Embedded scenario spec, as for `train`.
    #[arg(long, env = "MALCOLM_SCENARIO", default_value = "hetero")]
    pub scenario: String,
    /// Episodes to run (each a fresh seed: seed, seed+stride, seed+2*stride, ...).
    #[arg(long, env = "MALCOLM_EPISODES", default_value_t = 1)]
    pub episodes: u64,
    #[arg(long, env = "MALCOLM_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Step between the seeds of successive episodes: N envs started with seeds s, s+1, ...,
    /// s+N-1 and stride N never run the same episode.
    #[arg(long, env = "MALCOLM_SEED_STRIDE", default_value_t = 1)]
    pub seed_stride: u64,
    /// Env id announced in Hello (default: rack-sim-<pid>).
    #[arg(long, env = "MALCOLM_ENV_ID")]
    pub env_id: Option<String>,
    /// Seconds to wait for each agent reply before giving up.
    #[arg(long, env = "MALCOLM_ENV_TIMEOUT_S", default_value_t = 30.0)]
    pub timeout_s: f64,
    /// Append each episode's report as a JSON line to this file.
    #[arg(long, env = "MALCOLM_REPORT")]
    pub report: Option<PathBuf>,
    /// Bridge protocol versions to offer in the Hello (comma-separated; default: all this
    /// build speaks). `--protocols 1` talks to the agent as a v1 env.
    #[arg(long, env = "MALCOLM_PROTOCOLS", value_delimiter = ',')]
    pub protocols: Vec<u32>,
}

/// One finished episode.
#[derive(Debug, Clone)]
pub struct EpisodeLine {
    pub index: u64,
    pub seed: u64,
    pub report: Report,
}

/// Runs the episodes; `each` gets every finished one (the CLI prints it).
pub fn run(a: &EnvArgs, mut each: impl FnMut(&str, &EpisodeLine)) -> anyhow::Result<()> {
    use anyhow::Context;
    let scenario = rack_sim::by_name(&a.scenario).context("--scenario")?;
    let env_id = a
        .env_id
        .clone()
        .unwrap_or_else(|| format!("rack-sim-{}", std::process::id()));
    let timeout = Duration::from_secs_f64(a.timeout_s);
    for k in 0..a.episodes {
        let seed = a.seed + k * a.seed_stride;
        let mut sim = RackSim::new(scenario.clone(), seed)?;
        let mut client = ZmqEnvClient::connect(&a.connect, timeout)
            .with_context(|| format!("connecting to {}", a.connect))?;
        if !a.protocols.is_empty() {
            client = client.with_versions(&a.protocols);
        }
        let report = rack_sim::run_env_loop(&mut sim, &mut client, &env_id, 1)
            .with_context(|| format!("episode {k} against {}", a.connect))?;
        if let Some(p) = &a.report {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?;
            writeln!(f, "{}", serde_json::to_string(&report)?)?;
        }
        each(
            &env_id,
            &EpisodeLine {
                index: k,
                seed,
                report,
            },
        );
    }
    Ok(())
}
