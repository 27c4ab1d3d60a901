//! `load`: p99.9 latency against offered load.

use super::*;

pub(super) fn load(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let sz = format!("tasks={},warmup={}", size.tasks, size.warmup);
    let at = |rho: f64, fcfs: bool| {
        with(
            "homogeneous-16",
            &format!(
                "rho={rho},{sz}{}",
                if fcfs { ",discipline=fcfs" } else { "" }
            ),
        )
    };
    let (ms, mal, learners) = train_ms_and_malcolm(
        ctx,
        size,
        out,
        &at(LOAD_TRAIN_RHO, false),
        &at(LOAD_TRAIN_RHO, true),
    )?;
    let mut points = Vec::new();
    for &rho in LOADS {
        points.push(Point::new(MS, "learner:ms", &at(rho, false), rho)?);
        points.push(Point::new(MALCOLM, "learner:malcolm", &at(rho, true), rho)?);
        points.push(Point::new(PO2_FCFS, "po2", &at(rho, true), rho)?);
        points.push(Point::new("JSQ (EDF)", "jsq", &at(rho, false), rho)?);
    }
    let rows = run_sweep(
        ctx,
        "load",
        size,
        out,
        &points,
        &learners,
        serde_json::json!({"loads": LOADS, "train_rho": LOAD_TRAIN_RHO}),
    )?;
    let mut md = header(
        "load",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 6.5 experiment A: `homogeneous-16` (Poisson arrivals, bounded \
             Pareto alpha 1.5 service, tight deadlines) at load 0.4 .. 0.95. The learners are \
             trained once at rho = {LOAD_TRAIN_RHO} and evaluated at every load."
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\np99.9 latency (us):\n\n";
    md += &pivot_table("rho", &rows, Metric::P999);
    md += "\nMiss rate:\n\n";
    md += &pivot_table("rho", &rows, Metric::MissPct);
    let high: Vec<f64> = LOADS.iter().copied().filter(|&r| r > 0.8).collect();
    let below = high
        .iter()
        .all(|&r| match (find(&rows, MS, r), find(&rows, MALCOLM, r)) {
            (Some(s), Some(m)) => s.p999_us < m.p999_us,
            _ => false,
        });
    let _ = writeln!(
        md,
        "\nClaim: at high load (rho > 0.8) Malcolm-Strict's p99.9 is below Malcolm's at every \
         point: {}.",
        verdict(below)
    );
    md += "\nFigures: `p999_vs_load.png`, `miss_vs_load.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}
