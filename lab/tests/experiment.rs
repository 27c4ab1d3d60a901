//! The experiment runner's evaluation path on tiny scenarios (baselines only, no training):
//! the outcome tap must see exactly the measured tasks the simulator's report counts, and the
//! per-point summary must be the mean over seeds.

use malcolm_lab::experiment::{
    evaluate_points, microburst_eval_scenario, pivot_table, point_rows, replot, Ctx,
    ExperimentArgs, Metric, Point, Size,
};
use std::collections::HashMap;

fn args() -> ExperimentArgs {
    ExperimentArgs {
        name: "hetero".into(),
        quick: true,
        out: None,
        seeds: Some(3),
        train_s: None,
        train_seeds: None,
        tasks: None,
        warmup: None,
        envs: 1,
        threads: Some(2),
        seed: 1,
        replot: false,
        agents_config: None,
    }
}

#[test]
fn tap_counts_match_the_report_and_summary_is_the_mean() {
    let ctx = Ctx::new(args()).unwrap();
    let size = Size::resolve(&ctx.args, "hetero");
    assert_eq!((size.tasks, size.warmup, size.eval_seeds), (3000, 300, 3));
    let spec = "hetero:tasks=400,warmup=40";
    let points = vec![
        Point::new(
            "po2",
            "po2",
            "hetero:tasks=400,warmup=40,discipline=fcfs",
            1.0,
        )
        .unwrap(),
        Point::new("stale", "jsq-stale", spec, 2.0).unwrap(),
        Point::new("greedy", "slack-greedy", spec, 2.0).unwrap(),
    ];
    let runs = evaluate_points(&ctx, &size, &points, &HashMap::new()).unwrap();
    assert_eq!(runs.len(), 9);
    for r in &runs {
        let m = &r.margin;
        assert_eq!(
            m.completed + m.dropped,
            r.report.finished,
            "{}",
            r.row.label
        );
        assert_eq!(m.late, r.report.missed);
        assert_eq!(m.dropped, r.report.dropped);
        assert_eq!(r.report.finished, 360);
    }
    let rows = point_rows(&points, &runs);
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        let xs: Vec<f64> = runs
            .iter()
            .filter(|r| r.point == i)
            .map(|r| r.row.miss_rate)
            .collect();
        assert_eq!(row.seeds, 3);
        let mean = xs.iter().sum::<f64>() / 3.0;
        assert!((row.miss_rate - mean).abs() < 1e-12);
        assert!(row.miss_rate_ci95 >= 0.0);
    }
    // The summary reads back and redraws (what `--replot` does).
    let dir = tempfile::tempdir().unwrap();
    malcolm_lab::results::write_csv(&dir.path().join("summary.csv"), &rows).unwrap();
    replot("load", dir.path()).unwrap();
    let png = std::fs::read(dir.path().join("p999_vs_load.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(dir.path().join("miss_vs_load.png").exists());
    let t = pivot_table("x", &rows, Metric::MissPct);
    // Header, separator, one line per distinct x; po2 has no x = 2 cell.
    assert_eq!(t.lines().count(), 4, "{t}");
    assert!(t.lines().nth(3).unwrap().contains("| - |"), "{t}");
}

#[test]
fn microburst_evaluation_puts_the_burst_inside_the_measured_window() {
    let (s, label, at_ms) = microburst_eval_scenario(3000, 300).unwrap();
    let rate = s.arrival_rate_per_s().unwrap();
    let at_s = at_ms / 1e3;
    assert!(
        at_s * rate > 300.0 && at_s * rate < 3000.0,
        "{at_ms} ms at {rate}/s"
    );
    assert!(label.contains("burst at"));
    let ctx = Ctx::new(args()).unwrap();
    let mut size = Size::resolve(&ctx.args, "microburst");
    size.eval_seeds = 1;
    let p = Point {
        label: "po2".into(),
        policy: "po2".into(),
        scenario_spec: label,
        scenario: s,
        x: f64::NAN,
    };
    let runs = evaluate_points(&ctx, &size, &[p], &HashMap::new()).unwrap();
    let burst = runs[0]
        .report
        .per_class
        .get(&1)
        .expect("burst tasks measured");
    assert_eq!(burst.finished, 128);
}
