//! `hetero`: Po2 + FCFS on a 2 fast : 3 slow rack against the learners and the baselines.

use super::*;

pub(super) fn hetero(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let base = with(
        "hetero",
        &format!("tasks={},warmup={}", size.tasks, size.warmup),
    );
    let fcfs = with(&base, "discipline=fcfs");
    let ideal = with(
        "ideal",
        &format!(
            "tasks={},warmup={},discipline=fcfs",
            size.tasks, size.warmup
        ),
    );
    let ms = ctx.train(size, "malcolm-strict", &ctx.agents, &base, size.seed)?;
    let mal = ctx.train(size, "malcolm", &ctx.agents, &fcfs, size.seed)?;
    save_checkpoint(out, "malcolm-strict", &ms);
    save_checkpoint(out, "malcolm", &mal);
    let learners: HashMap<String, Arc<dyn PolicyFactory>> = [
        ("learner:ms".to_string(), ms.factory.clone()),
        ("learner:malcolm".to_string(), mal.factory.clone()),
    ]
    .into();
    let nan = f64::NAN;
    let points = vec![
        Point::new(&format!("{PO2_FCFS} (2 fast : 3 slow)"), "po2", &fcfs, nan)?,
        Point::new(&format!("{PO2_FCFS}, ideal (5 fast)"), "po2", &ideal, nan)?,
        Point::new(MS, "learner:ms", &base, nan)?,
        Point::new(MALCOLM, "learner:malcolm", &fcfs, nan)?,
        Point::new("Po2 + EDF", "po2", &base, nan)?,
        Point::new("JSQ (EDF)", "jsq", &base, nan)?,
        Point::new("Slack-greedy (EDF)", "slack-greedy", &base, nan)?,
        Point::new("TOD-N (EDF)", "tod-n", &base, nan)?,
    ];
    write_config(ctx, "hetero", size, out, &points, serde_json::json!({}))?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    finish(out, &points, &runs)?;
    // The classic summary (results::SummaryRow) so job::ratios applies.
    let eval_rows: Vec<EvalRow> = runs.iter().map(|r| r.row.clone()).collect();
    let summary: Vec<SummaryRow> = results::summarise(&eval_rows);
    runs_latency_cdf(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF, hetero rack (held-out seed {EVAL_SEED_BASE})"),
        &runs,
    )?;
    curves_plot(
        &out.join("learning_curves.png"),
        "Training on the hetero rack: miss rate per episode",
        &[
            ("Malcolm-Strict".to_string(), &ms),
            ("Malcolm".to_string(), &mal),
        ],
    )?;
    pooled_margin_plot(
        &out.join("margin_cdf.png"),
        "Latency / relative deadline, hetero rack (pooled seeds)",
        &points,
        &runs,
    )?;
    let mut md = header(
        "hetero",
        size,
        out,
        ctx,
        &points,
        "The design's chapter 5.4 experiment 1-2: 2 fast : 3 slow nodes (fast = speed 1.0 x 4 \
         cores, slow = speed 0.2 x 16 cores). Po2 + FCFS on that rack, Po2 + FCFS on 5 fast nodes \
         offered the same task rate (ideal), Malcolm-Strict (IQN + CVaR + barrier reward, EDF \
         nodes), original Malcolm (FCFS nodes), and references.",
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\n";
    md += &results::markdown_table(&summary);
    md += "\n";
    md += &job::ratios(&summary);
    let get = |l: &str| summary.iter().find(|r| r.label.starts_with(l));
    if let (Some(m), Some(p), Some(i)) = (
        get("Malcolm-Strict"),
        get("Po2 + FCFS (2"),
        get("Po2 + FCFS, ideal"),
    ) {
        let ratio = m.goodput_per_s / p.goodput_per_s;
        let frac = m.goodput_per_s / i.goodput_per_s;
        let _ = writeln!(
            md,
            "\nClaims: Malcolm-Strict far ahead of Po2 + FCFS in goodput ({ratio:.2}x; design 4.64x): \
             {}; a large fraction (>= 50%) of the ideal rack's goodput ({:.1}%; design 75.4%): {}; \
             miss rate below Po2 + FCFS's ({:.3}% vs {:.3}%): {}.",
            verdict(ratio > 1.5),
            frac * 100.0,
            verdict(frac >= 0.5),
            m.miss_rate * 100.0,
            p.miss_rate * 100.0,
            verdict(m.miss_rate < p.miss_rate)
        );
    }
    md += "\nFigures: `latency_cdf.png` (first held-out seed), `margin_cdf.png`, \
           `learning_curves.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}
