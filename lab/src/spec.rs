//! Scenario spec strings (`name:key=value,...`, as `rack_sim::by_name` reads them), edited in
//! one place: overrides appended, a default episode length, FCFS nodes for the classic system,
//! and the results folder named after a spec.

use std::path::PathBuf;

/// Appends `key=value,...` overrides to a scenario spec.
pub fn with(spec: &str, kv: &str) -> String {
    if kv.is_empty() {
        spec.to_string()
    } else if spec.contains(':') {
        format!("{spec},{kv}")
    } else {
        format!("{spec}:{kv}")
    }
}

/// `spec` with episodes of `tasks` tasks (warm-up a tenth of them), unless it sets `tasks`.
pub fn with_default_length(spec: &str, tasks: u64) -> String {
    if spec.contains("tasks=") {
        return spec.to_string();
    }
    with(spec, &format!("tasks={tasks},warmup={}", tasks / 10))
}

/// `spec` on FCFS nodes (the classic system the design compares against).
pub fn fcfs(spec: &str) -> String {
    with(spec, "discipline=fcfs")
}

/// An evaluation entry `policy[+fcfs]` on `scenario`: (policy spec, scenario spec, label).
pub fn eval_entry(entry: &str, scenario: &str) -> (String, String, String) {
    match entry.strip_suffix("+fcfs") {
        Some(p) => (p.to_string(), fcfs(scenario), format!("{p} (FCFS)")),
        None => (
            entry.to_string(),
            scenario.to_string(),
            format!("{entry} (EDF)"),
        ),
    }
}

/// `results/<prefix>-<unix time>`, the spec's separators made file-name safe.
pub fn default_out(prefix: &str) -> PathBuf {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("results").join(format!("{}-{t}", prefix.replace([':', ',', '='], "_")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_lengths_and_entries() {
        assert_eq!(with("hetero", "tasks=10"), "hetero:tasks=10");
        assert_eq!(
            with("hetero:rho=0.5", "tasks=10"),
            "hetero:rho=0.5,tasks=10"
        );
        assert_eq!(with("hetero", ""), "hetero");
        assert_eq!(
            with_default_length("hetero", 6000),
            "hetero:tasks=6000,warmup=600"
        );
        assert_eq!(
            with_default_length("hetero:tasks=5", 6000),
            "hetero:tasks=5"
        );
        assert_eq!(
            eval_entry("po2+fcfs", "hetero:f=3"),
            (
                "po2".into(),
                "hetero:f=3,discipline=fcfs".into(),
                "po2 (FCFS)".into()
            )
        );
        assert_eq!(eval_entry("jsq", "hetero").2, "jsq (EDF)");
        let out = default_out("eval-hetero:f=3");
        assert!(out
            .to_string_lossy()
            .starts_with("results/eval-hetero_f_3-"));
    }
}
