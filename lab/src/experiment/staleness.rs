//! `staleness`: goodput against the heartbeat interval, JSQ on the stale view beside probing JSQ.

use super::*;

pub(super) fn staleness(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let sz = format!("tasks={},warmup={}", size.tasks, size.warmup);
    let at = |hb: u64| with("staleness", &format!("t_hb_us={hb},{sz}"));
    let ms = ctx.train(
        size,
        "malcolm-strict",
        &ctx.agents,
        &at(STALENESS_TRAIN_HB_US),
        size.seed,
    )?;
    save_checkpoint(out, "malcolm-strict", &ms);
    let learners: HashMap<String, Arc<dyn PolicyFactory>> =
        [("learner:ms".to_string(), ms.factory.clone())].into();
    let mut points = Vec::new();
    for &hb in HEARTBEATS_US {
        let x = hb as f64;
        points.push(Point::new(MS, "learner:ms", &at(hb), x)?);
        points.push(Point::new(
            "JSQ on stale heartbeats (EDF)",
            "jsq-stale",
            &at(hb),
            x,
        )?);
        points.push(Point::new(
            "JSQ with fresh probes (EDF)",
            "jsq",
            &at(hb),
            x,
        )?);
        points.push(Point::new(
            "Slack-greedy, stale view (EDF)",
            "slack-greedy",
            &at(hb),
            x,
        )?);
    }
    let rows = run_sweep(
        ctx,
        "staleness",
        size,
        out,
        &points,
        &learners,
        serde_json::json!({"heartbeats_us": HEARTBEATS_US, "train_t_hb_us": STALENESS_TRAIN_HB_US}),
    )?;
    let mut md = header(
        "staleness",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 5.4 experiment 3: the `staleness` rack (16 fast nodes) with \
             heartbeats every 10 .. 1000 us. Malcolm-Strict is trained once at T_hb = \
             {STALENESS_TRAIN_HB_US} us and evaluated at every interval. \"JSQ on stale \
             heartbeats\" joins the shortest queue of the origin's Global State Table (no probes: \
             the herd-prone JSQ of the design); \"JSQ with fresh probes\" is the `jsq` baseline, \
             which pays a probe round trip per task and does not depend on T_hb."
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += "\nGoodput (on-time completions / s):\n\n";
    md += &pivot_table("T_hb (us)", &rows, Metric::Goodput);
    md += "\nMiss rate:\n\n";
    md += &pivot_table("T_hb (us)", &rows, Metric::MissPct);
    let (lo, hi) = (
        HEARTBEATS_US[0] as f64,
        HEARTBEATS_US[HEARTBEATS_US.len() - 1] as f64,
    );
    let drop = |l: &str| -> Option<f64> {
        let (a, b) = (find(&rows, l, lo)?, find(&rows, l, hi)?);
        Some(100.0 * (a.goodput_per_s - b.goodput_per_s) / a.goodput_per_s)
    };
    if let (Some(dm), Some(dj)) = (drop(MS), drop("JSQ on stale heartbeats (EDF)")) {
        let _ = writeln!(
            md,
            "\nClaim: graceful degradation with staleness: from T_hb {lo} to {hi} us Malcolm-Strict \
             loses {dm:.1}% of its goodput, JSQ on stale heartbeats {dj:.1}%; Malcolm-Strict \
             degrades less: {}.",
            verdict(dm < dj)
        );
    }
    md += "\nFigures: `goodput_vs_heartbeat.png`, `miss_vs_heartbeat.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}
