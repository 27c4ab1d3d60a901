//! `barrier-ablation`: the barrier reward against linear and step rewards, several training seeds each.

use super::*;

pub(super) fn kind_name(k: RewardKindName) -> &'static str {
    match k {
        RewardKindName::Barrier => "barrier",
        RewardKindName::Linear => "linear",
        RewardKindName::Step => "step",
    }
}

/// A row of `learners.csv` in barrier-ablation (and cvar).
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct LearnerRow {
    variant: String,
    train_seed: usize,
    episodes: usize,
    decisions: u64,
    late_training_miss_rate: f64,
    eval_miss_rate: f64,
    eval_goodput_per_s: f64,
    eval_p99_us: f64,
}

/// A row of `variants.csv`: a variant over its training seeds.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct VariantRow {
    variant: String,
    learners: usize,
    miss_rate: f64,
    miss_rate_ci95: f64,
    goodput_per_s: f64,
    goodput_ci95: f64,
    p99_us: f64,
    p99_ci95: f64,
    late_training_miss_mean: f64,
    late_training_miss_std: f64,
    margin_median: f64,
    margin_p99: f64,
    near_miss_frac: f64,
    just_late_frac: f64,
}

pub(super) fn barrier_ablation(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let base = with(
        "hetero",
        &format!("tasks={},warmup={}", size.tasks, size.warmup),
    );
    let kinds = [
        RewardKindName::Barrier,
        RewardKindName::Linear,
        RewardKindName::Step,
    ];
    let mut trained: Vec<(RewardKindName, usize, Trained)> = Vec::new();
    for k in kinds {
        for s in 0..size.train_seeds {
            let mut a = ctx.agents.clone();
            a.iqn.reward.kind = k;
            a.iqn.seed = ctx.agents.iqn.seed + s as u64;
            let t = ctx.train(
                size,
                "malcolm-strict",
                &a,
                &base,
                size.seed + 7_919 * s as u64,
            )?;
            save_checkpoint(out, &format!("{}-seed{s}", kind_name(k)), &t);
            trained.push((k, s, t));
        }
    }
    let mut learners: HashMap<String, Arc<dyn PolicyFactory>> = HashMap::new();
    let mut points = Vec::new();
    for (k, s, t) in &trained {
        let key = format!("learner:{}-{s}", kind_name(*k));
        learners.insert(key.clone(), t.factory.clone());
        points.push(Point::new(
            &format!("{} reward, training seed {s}", kind_name(*k)),
            &key,
            &base,
            *s as f64,
        )?);
    }
    write_config(
        ctx,
        "barrier-ablation",
        size,
        out,
        &points,
        serde_json::json!({"kinds": ["barrier", "linear", "step"], "train_seeds": size.train_seeds,
            "reward": ctx.agents.iqn.reward}),
    )?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    let rows = finish(out, &points, &runs)?;
    // Per learner, then per kind over learners.
    let mut lrows = Vec::new();
    let mut vrows = Vec::new();
    let mut kind_hists = Vec::new();
    let mut agg_series = Vec::new();
    for k in kinds {
        let name = kind_name(k);
        let mut hist = MarginHist::new();
        let mut late = Vec::new();
        let (mut miss, mut good, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        let mut curves_k = Vec::new();
        for (i, (kk, s, t)) in trained.iter().enumerate() {
            if *kk != k {
                continue;
            }
            for r in runs.iter().filter(|r| r.point == i) {
                hist.merge(&r.margin);
            }
            let c: Vec<(f64, f64)> = t
                .curve
                .iter()
                .map(|p| (p.decisions as f64, p.miss_rate * 100.0))
                .collect();
            let lm = curves::late_mean(&c, 0.25);
            late.push(lm);
            curves_k.push(c);
            let pr = &rows[i];
            miss.push(pr.miss_rate);
            good.push(pr.goodput_per_s);
            p99.push(pr.p99_us);
            lrows.push(LearnerRow {
                variant: name.into(),
                train_seed: *s,
                episodes: t.curve.len(),
                decisions: t.curve.last().map_or(0, |p| p.decisions),
                late_training_miss_rate: lm / 100.0,
                eval_miss_rate: pr.miss_rate,
                eval_goodput_per_s: pr.goodput_per_s,
                eval_p99_us: pr.p99_us,
            });
        }
        let (m, g, p) = (MeanCi::of(&miss), MeanCi::of(&good), results::tail_ci(&p99));
        let late_f: Vec<f64> = late.iter().copied().filter(|v| v.is_finite()).collect();
        vrows.push(VariantRow {
            variant: name.into(),
            learners: miss.len(),
            miss_rate: m.mean,
            miss_rate_ci95: m.half_width,
            goodput_per_s: g.mean,
            goodput_ci95: g.half_width,
            p99_us: p.mean,
            p99_ci95: p.half_width,
            late_training_miss_mean: MeanCi::of(&late_f).mean / 100.0,
            late_training_miss_std: curves::std_dev(&late_f) / 100.0,
            margin_median: hist.quantile(0.5),
            margin_p99: hist.quantile(0.99),
            near_miss_frac: hist.near_miss(),
            just_late_frac: hist.just_late(),
        });
        let bins = curves::aggregate(&curves_k, if size.quick { 5 } else { 12 });
        results::write_csv(&out.join(format!("learning_curve_{name}.csv")), &bins)?;
        agg_series.push(Series {
            label: format!("{name} reward ({} seeds)", curves_k.len()),
            points: bins
                .iter()
                .map(|b| (b.x, b.mean, Some((b.mean - b.ci95, b.mean + b.ci95))))
                .collect(),
        });
        kind_hists.push((format!("{name} reward"), hist));
    }
    results::write_csv(&out.join("learners.csv"), &lrows)?;
    results::write_csv(&out.join("variants.csv"), &vrows)?;
    #[derive(serde::Serialize)]
    struct MarginRow<'a> {
        variant: &'a str,
        ratio_upper: f64,
        cdf: f64,
    }
    let margin_rows: Vec<MarginRow> = kind_hists
        .iter()
        .flat_map(|(l, h)| {
            h.cdf_points().into_iter().map(move |(x, y)| MarginRow {
                variant: l,
                ratio_upper: x,
                cdf: y,
            })
        })
        .collect();
    results::write_csv(&out.join("margin_cdf.csv"), &margin_rows)?;
    margin_plot(
        &out.join("margin_cdf.png"),
        "Safety margin: latency / relative deadline (held-out seeds, pooled)",
        &kind_hists,
        &points,
    )?;
    if agg_series.iter().any(|s| !s.points.is_empty()) {
        line_chart(
            &out.join("learning_curves.png"),
            &Chart {
                title: "Training miss rate: mean over training seeds, 95% bars".into(),
                x_label: "decisions served during training".into(),
                y_label: "training-episode miss rate (%)".into(),
                x_log: false,
                y_log: false,
            },
            &agg_series,
        )?;
    }
    let mut md = header(
        "barrier-ablation",
        size,
        out,
        ctx,
        &points,
        "The design's chapter 5.5 ablation: Malcolm-Strict trained with the barrier reward, a \
         linear penalty (-latency, scaled) and a step reward (+1 on time, -100 on a miss), each \
         from several training seeds, on the `hetero` rack; evaluated greedily on held-out seeds.",
    );
    for (k, s, t) in &trained {
        md += &learner_line(&format!("{} seed {s}", kind_name(*k)), t);
    }
    md += "\n| reward | learners | miss rate | goodput (on-time/s) | p99 (us) | late-training miss (mean, std over seeds) | median latency/deadline | p99 latency/deadline | on time in last 10% of budget | late by < 10% |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for v in &vrows {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3}% ± {:.3} | {:.0} ± {:.0} | {} | {:.2}%, {:.2} | {:.2} | {:.2} | {:.2}% | {:.2}% |",
            v.variant,
            v.learners,
            v.miss_rate * 100.0,
            v.miss_rate_ci95 * 100.0,
            v.goodput_per_s,
            v.goodput_ci95,
            results::fmt_tail(v.p99_us, v.p99_ci95),
            v.late_training_miss_mean * 100.0,
            v.late_training_miss_std * 100.0,
            v.margin_median,
            v.margin_p99,
            v.near_miss_frac * 100.0,
            v.just_late_frac * 100.0
        );
    }
    md += "\n± is the 95% interval over the training seeds (each learner's mean over the held-out seeds).\n";
    if let [b, l, s] = &vrows[..] {
        let _ = writeln!(
            md,
            "\nClaims: barrier misses fewer deadlines than linear ({:.3}% vs {:.3}%; design 0.02% vs 12.5%): {}; \
             than step ({:.3}% vs {:.3}%; design 8.3%): {}; linear leaves more tasks just before or \
             after the deadline than barrier ({:.2}% vs {:.2}%): {}; step trains less stably than barrier \
             (late-training miss std {:.2} vs {:.2} points): {}.",
            b.miss_rate * 100.0,
            l.miss_rate * 100.0,
            verdict(b.miss_rate < l.miss_rate),
            b.miss_rate * 100.0,
            s.miss_rate * 100.0,
            verdict(b.miss_rate < s.miss_rate),
            (l.near_miss_frac + l.just_late_frac) * 100.0,
            (b.near_miss_frac + b.just_late_frac) * 100.0,
            verdict(l.near_miss_frac + l.just_late_frac > b.near_miss_frac + b.just_late_frac),
            s.late_training_miss_std * 100.0,
            b.late_training_miss_std * 100.0,
            verdict(s.late_training_miss_std > b.late_training_miss_std)
        );
    }
    md += "\nFigures: `margin_cdf.png`, `learning_curves.png`. Data: `eval.csv`, `summary.csv` \
           (per learner), `learners.csv`, `variants.csv`, `margin_cdf.csv`, \
           `learning_curve_<kind>.csv`.\n";
    write_md(out, md, t0)
}
