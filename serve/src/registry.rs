//! Policy names to factories: the fixed-rule baselines of `malcolm-policies` and the libtorch
//! learners of `malcolm-agents`, with `name:key=value,...` parameters for baselines.

use malcolm_agents::AgentsConfig;
use malcolm_policies::baselines::{self, Params};
use malcolm_policies::{PolicyError, PolicyFactory};
use std::sync::Arc;

/// Every policy name the server knows.
pub fn policy_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = malcolm_agents::POLICY_NAMES.to_vec();
    v.extend_from_slice(baselines::NAMES);
    v
}

/// Splits `power-of-d:d=3,probe_cost=false` into the name and its parameters.
pub fn parse_policy_spec(spec: &str) -> Result<(String, Params), PolicyError> {
    let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let mut params = Params::new();
    for kv in rest.split(',').filter(|s| !s.trim().is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            PolicyError::InvalidState(format!("policy parameter {kv:?} is not key=value"))
        })?;
        params.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok((name.trim().to_string(), params))
}

/// Makes the factory for a policy spec.
pub fn make_factory(
    spec: &str,
    agents: &AgentsConfig,
) -> Result<Arc<dyn PolicyFactory>, PolicyError> {
    let (name, params) = parse_policy_spec(spec)?;
    if malcolm_agents::POLICY_NAMES.contains(&name.as_str()) {
        if !params.is_empty() {
            return Err(PolicyError::InvalidState(format!(
                "{name} is configured with --agents-config, not name:key=value"
            )));
        }
        return malcolm_agents::factory_by_name(&name, agents);
    }
    match baselines::factory_by_name(&name, &params) {
        Ok(f) => Ok(Arc::from(f)),
        Err(PolicyError::UnknownPolicy(n)) => Err(PolicyError::UnknownPolicy(format!(
            "{n} (known: {})",
            policy_names().join(", ")
        ))),
        Err(e) => Err(e),
    }
}

/// The policy flags every subcommand that serves a policy shares.
#[derive(clap::Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Policy: malcolm-strict (alias iqn), malcolm, po2, power-of-d[:d=3], jsq, jsq-stale,
    /// slack-greedy, tod-n, round-robin, random. Baselines take `name:key=value,...`
    /// parameters.
    #[arg(long, env = "MALCOLM_POLICY", default_value = "malcolm-strict")]
    pub policy: String,
    /// JSON file with the learners' hyper-parameters (defaults: design.md section 7).
    #[arg(long, env = "MALCOLM_AGENTS_CONFIG")]
    pub agents_config: Option<std::path::PathBuf>,
}

/// A factory maker for [`crate::shared::Shared`] bound to one agents configuration.
pub fn maker(agents: AgentsConfig) -> Box<crate::shared::FactoryMaker> {
    Box::new(move |spec: &str| make_factory(spec, &agents))
}

/// Why the learners' configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AgentsConfigError {
    #[error("reading agents config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing agents config {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// The learners' hyper-parameters: the JSON file at `path`, or the defaults (design.md
/// section 7) when there is none. The one place every subcommand reads it.
pub fn load_agents_config(
    path: Option<&std::path::Path>,
) -> Result<AgentsConfig, AgentsConfigError> {
    let Some(path) = path else {
        return Ok(AgentsConfig::default());
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AgentsConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| AgentsConfigError::Parse {
        path: shown,
        source,
    })
}
