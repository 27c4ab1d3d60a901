//! `heavy-tail`: miss rate against the Pareto alpha of service times.

use super::*;

pub(super) fn heavy_tail(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let sz = format!("tasks={},warmup={}", size.tasks, size.warmup);
    let at = |a: f64, fcfs: bool| {
        with(
            "heavy-tail",
            &format!(
                "alpha={a},{sz}{}",
                if fcfs { ",discipline=fcfs" } else { "" }
            ),
        )
    };
    let (ms, mal, learners) = train_ms_and_malcolm(
        ctx,
        size,
        out,
        &at(HEAVY_TAIL_TRAIN_ALPHA, false),
        &at(HEAVY_TAIL_TRAIN_ALPHA, true),
    )?;
    let mut points = Vec::new();
    for &a in ALPHAS {
        points.push(Point::new(MS, "learner:ms", &at(a, false), a)?);
        points.push(Point::new(MALCOLM, "learner:malcolm", &at(a, true), a)?);
        points.push(Point::new(PO2_FCFS, "po2", &at(a, true), a)?);
    }
    let rows = run_sweep(
        ctx,
        "heavy-tail",
        size,
        out,
        &points,
        &learners,
        serde_json::json!({"alphas": ALPHAS, "train_alpha": HEAVY_TAIL_TRAIN_ALPHA}),
    )?;
    let mut md = header(
        "heavy-tail",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 5.4 experiment 2: the `heavy-tail` rack (16 fast nodes, bounded \
             Pareto service with x_m = 10 us, tight deadlines) at alpha 2.5 .. 1.1. Each learner is \
             trained once, at alpha = {HEAVY_TAIL_TRAIN_ALPHA}, and evaluated at every alpha \
             (Malcolm with FCFS nodes, Malcolm-Strict with EDF nodes, power-of-2 with FCFS nodes)."
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\nMiss rate:\n\n";
    md += &pivot_table("alpha", &rows, Metric::MissPct);
    md += "\np99 latency (us):\n\n";
    md += &pivot_table("alpha", &rows, Metric::P99);
    let (lo, hi) = (ALPHAS[0], ALPHAS[ALPHAS.len() - 1]);
    if let (Some(m0), Some(m1), Some(s0), Some(s1)) = (
        find(&rows, MALCOLM, lo),
        find(&rows, MALCOLM, hi),
        find(&rows, MS, lo),
        find(&rows, MS, hi),
    ) {
        let dm = (m1.miss_rate - m0.miss_rate) * 100.0;
        let ds = (s1.miss_rate - s0.miss_rate) * 100.0;
        let _ = writeln!(
            md,
            "\nClaim: Malcolm's miss rate rises with heavier tails faster than Malcolm-Strict's \
             (alpha {lo} -> {hi}: Malcolm {:+.2} points, Malcolm-Strict {:+.2} points): {}; \
             Malcolm-Strict below Malcolm at alpha {hi} ({:.3}% vs {:.3}%): {}.",
            dm,
            ds,
            verdict(dm > ds),
            s1.miss_rate * 100.0,
            m1.miss_rate * 100.0,
            verdict(s1.miss_rate < m1.miss_rate)
        );
    }
    md += "\nFigures: `miss_vs_alpha.png`, `p99_vs_alpha.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}
