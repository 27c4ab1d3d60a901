//! The golden reward vectors in proto/testdata/reward_vectors.csv (written from design.md section 7's
//! formulas in decimal arithmetic by proto/testdata/generate_rewards.py), shared with the
//! Python adapter's tests: the per-task slack and reward of every row must match.

use malcolm_policies::reward::{outcome_slack_us, task_reward, RewardConfig, RewardKind};
use malcolm_proto::bridge::{OutcomeKind, TaskOutcome};
use std::collections::HashMap;

/// Same closeness as the unit tests of reward.rs: the generator rounds exact values, the
/// implementation accumulates a few ulps through log1p/exp and ns -> us divisions.
fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * (1.0 + want.abs())
}

struct Row(HashMap<String, String>);

impl Row {
    fn s(&self, k: &str) -> &str {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("reward_vectors.csv has no column {k:?}"))
    }
    fn f(&self, k: &str) -> f64 {
        let v = self.s(k);
        v.parse()
            .unwrap_or_else(|_| panic!("column {k}: {v:?} is not a number"))
    }
    fn u(&self, k: &str) -> u64 {
        let v = self.s(k);
        v.parse()
            .unwrap_or_else(|_| panic!("column {k}: {v:?} is not an integer"))
    }
}

fn rows() -> Vec<Row> {
    let path = malcolm_proto::testdata_dir().join("reward_vectors.csv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run proto/testdata/generate_rewards.py)",
            path.display()
        )
    });
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "row {l:?}");
            Row(header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect())
        })
        .collect()
}

fn config(r: &Row) -> RewardConfig {
    RewardConfig {
        kind: match r.s("reward") {
            "barrier" => RewardKind::Barrier,
            "linear" => RewardKind::Linear,
            "step" => RewardKind::Step,
            other => panic!("unknown reward kind {other:?}"),
        },
        r_goodput: r.f("r_goodput"),
        lambda: r.f("lambda"),
        eta: r.f("eta"),
        beta: r.f("beta"),
        gamma: r.f("gamma"),
        r_min: r.f("r_min"),
        linear_scale_per_us: r.f("linear_scale_per_us"),
        step_hit: r.f("step_hit"),
        step_miss: r.f("step_miss"),
    }
}

fn outcome(r: &Row) -> TaskOutcome {
    let kind = match r.s("outcome") {
        "completed" => OutcomeKind::Completed,
        "missed" => OutcomeKind::Missed,
        "dropped" => OutcomeKind::Dropped,
        "unspecified" => OutcomeKind::Unspecified,
        other => panic!("unknown outcome kind {other:?}"),
    };
    let finish_ns = r.u("finish_ns");
    let latency_ns = r.u("latency_ns");
    TaskOutcome {
        kind: kind as i32,
        finish_ns,
        deadline_ns: r.u("deadline_ns"),
        latency_ns,
        arrival_ns: finish_ns - latency_ns,
        ..Default::default()
    }
}

#[test]
fn golden_reward_vectors_agree() {
    let rows = rows();
    assert!(rows.len() >= 60, "only {} reward vectors", rows.len());
    let mut kinds = std::collections::BTreeSet::new();
    for r in &rows {
        let (cfg, o) = (config(r), outcome(r));
        let service = r.f("service_on_node_us");
        let case = r.s("case");
        kinds.insert((r.s("reward").to_string(), r.s("outcome").to_string()));
        let slack = outcome_slack_us(&o, service);
        assert!(
            close(slack, r.f("slack_us")),
            "{case}: slack {slack} us, golden {}",
            r.s("slack_us")
        );
        let got = task_reward(&cfg, &o, service);
        assert!(
            close(got, r.f("expected")),
            "{case}: reward {got}, golden {}",
            r.s("expected")
        );
    }
    // Every reward kind is exercised with every outcome kind.
    assert_eq!(kinds.len(), 12, "{kinds:?}");
}
