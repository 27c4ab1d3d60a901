//! `cvar`: the CVaR level alpha 0.05 against 0.10 and 1.0 (risk-neutral).

use super::*;

pub(super) fn cvar(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let base = with(
        "hetero",
        &format!("tasks={},warmup={}", size.tasks, size.warmup),
    );
    let mut trained = Vec::new();
    let mut learners: HashMap<String, Arc<dyn PolicyFactory>> = HashMap::new();
    let mut points = Vec::new();
    for &a in CVAR_ALPHAS {
        let mut ag = ctx.agents.clone();
        ag.iqn.cvar_alpha = a;
        let t = ctx.train(size, "malcolm-strict", &ag, &base, size.seed)?;
        save_checkpoint(out, &format!("cvar-{a}"), &t);
        let key = format!("learner:cvar-{a}");
        learners.insert(key.clone(), t.factory.clone());
        let label = if a >= 1.0 {
            format!("CVaR alpha {a} (risk-neutral)")
        } else {
            format!("CVaR alpha {a}")
        };
        points.push(Point::new(&label, &key, &base, a)?);
        trained.push((label, t));
    }
    write_config(
        ctx,
        "cvar",
        size,
        out,
        &points,
        serde_json::json!({"cvar_alphas": CVAR_ALPHAS}),
    )?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    let rows = finish(out, &points, &runs)?;
    runs_latency_cdf(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF by CVaR alpha, hetero rack (seed {EVAL_SEED_BASE})"),
        &runs,
    )?;
    let refs: Vec<(String, &Trained)> = trained.iter().map(|(l, t)| (l.clone(), t)).collect();
    curves_plot(
        &out.join("learning_curves.png"),
        "Training by CVaR alpha: miss rate per episode",
        &refs,
    )?;
    let mut md = header(
        "cvar",
        size,
        out,
        ctx,
        &points,
        "Malcolm-Strict on the `hetero` rack with the CVaR level of its action choice at 0.05, \
         0.10 (default) and 1.0 (the mean: risk-neutral), same training budget and seed.",
    );
    for (l, t) in &trained {
        md += &learner_line(l, t);
    }
    md += "\n| CVaR alpha | miss rate | goodput (on-time/s) | p99 (us) | p99.9 (us) |\n|---|---:|---:|---:|---:|\n";
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.label,
            Metric::MissPct.cell(r),
            Metric::Goodput.cell(r),
            Metric::P99.cell(r),
            Metric::P999.cell(r)
        );
    }
    if let (Some(r10), Some(r100)) = (
        rows.iter().find(|r| (r.x - 0.10).abs() < 1e-9),
        rows.iter().find(|r| (r.x - 1.0).abs() < 1e-9),
    ) {
        // With drops counted at +infinity, p99.9 is infinite for any policy that drops more
        // than 0.1% of its tasks; the tail beyond the deadline (the miss rate) then decides.
        let (measure, lower) = if r10.p999_us.is_finite() || r100.p999_us.is_finite() {
            ("p99.9", r10.p999_us < r100.p999_us)
        } else {
            (
                "miss rate (both p99.9 infinite)",
                r10.miss_rate < r100.miss_rate,
            )
        };
        let _ = writeln!(
            md,
            "\nClaim: risk-averse (alpha 0.10) vs risk-neutral (1.0): p99.9 {:.1} vs {:.1} us, miss rate \
             {:.3}% vs {:.3}%; lower tail with CVaR, judged by the {measure}: {}.",
            r10.p999_us,
            r100.p999_us,
            r10.miss_rate * 100.0,
            r100.miss_rate * 100.0,
            verdict(lower)
        );
    }
    md += "\nFigures: `latency_cdf.png`, `learning_curves.png`. Data: `eval.csv`, `summary.csv`.\n";
    write_md(out, md, t0)
}
