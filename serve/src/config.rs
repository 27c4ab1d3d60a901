//! Optional config file for the CLI: a TOML file whose keys are the long flag names, either
//! at the top level or under a `[serve]`, `[train]`, ... table for one subcommand.
//!
//! Precedence: command-line flag > environment variable > config file > built-in default.
//! The file is applied by exporting `MALCOLM_<FLAG>` for keys whose variable is unset, so
//! every flag that has an environment variable can also come from the file.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Environment variable of a long flag: `session-timeout-s` -> `MALCOLM_SESSION_TIMEOUT_S`.
pub fn env_var_of(flag: &str) -> String {
    format!("MALCOLM_{}", flag.replace('-', "_").to_uppercase())
}

/// Reads `path` and returns the (variable, value) pairs for `subcommand`; the caller exports
/// those not already set.
pub fn env_from_file(path: &Path, subcommand: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let err = |reason: String| ConfigError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let mut out = Vec::new();
    let mut add = |k: &str, v: &toml::Value| -> Result<(), ConfigError> {
        let value = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
            other => return Err(err(format!("key {k}: unsupported value {other}"))),
        };
        out.push((env_var_of(k), value));
        Ok(())
    };
    for (k, v) in &table {
        match v {
            toml::Value::Table(_) => {}
            _ => add(k, v)?,
        }
    }
    if let Some(toml::Value::Table(section)) = table.get(subcommand) {
        for (k, v) in section {
            add(k, v)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_override_top_level_and_names_map_to_variables() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "policy = \"po2\"\nenvs = 3\n[serve]\nbind = [\"tcp://127.0.0.1:1\", \"ipc:///tmp/x\"]\npolicy = \"jsq\"\n",
        )
        .unwrap();
        let v = env_from_file(&p, "serve").unwrap();
        let get = |k: &str| v.iter().rev().find(|(n, _)| n == k).map(|(_, x)| x.clone());
        assert_eq!(get("MALCOLM_POLICY").as_deref(), Some("jsq"));
        assert_eq!(get("MALCOLM_ENVS").as_deref(), Some("3"));
        assert_eq!(
            get("MALCOLM_BIND").as_deref(),
            Some("tcp://127.0.0.1:1,ipc:///tmp/x")
        );
        std::fs::write(&p, "policy = [").unwrap();
        assert!(env_from_file(&p, "serve").is_err());
    }
}
