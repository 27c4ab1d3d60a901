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

/// A factory maker for [`crate::shared::Shared`] bound to one agents configuration.
pub fn maker(agents: AgentsConfig) -> Box<crate::shared::FactoryMaker> {
    Box::new(move |spec: &str| make_factory(spec, &agents))
}
