//! `microburst`: miss rate of the micro-burst tasks (class 1).

use super::*;

/// The `microburst` evaluation scenario: the named one with the burst moved into the middle
/// of the measured window (the standard first burst comes at 50 ms, past a short episode),
/// keeping its 100 ms period, size and 10 us deadline. Returns it with its spec and the burst
/// instant.
pub fn microburst_eval_scenario(tasks: u64, warmup: u64) -> Result<(Scenario, String, f64)> {
    let spec = with("microburst", &format!("tasks={tasks},warmup={warmup}"));
    let mut s = rack_sim::by_name(&spec)?;
    let rate = s
        .arrival_rate_per_s()
        .context("microburst has a Poisson source")?;
    let mid_tasks = warmup as f64 + (tasks.saturating_sub(warmup)) as f64 / 2.0;
    let at_ns = (mid_tasks / rate * 1e9) as u64;
    let b = s
        .workload
        .bursts
        .as_mut()
        .context("microburst has bursts")?;
    b.first_at_ns = at_ns;
    let label = format!("{spec} (burst at {:.2} ms)", at_ns as f64 / 1e6);
    Ok((s, label, at_ns as f64 / 1e6))
}

/// Tasks per training episode of `microburst` so that the standard burst (first at 50 ms)
/// falls inside it: arrival rate x (first burst + 10%).
pub(super) fn microburst_train_tasks(size: &Size) -> Result<u64> {
    if size.quick {
        return Ok(size.tasks);
    }
    let s = rack_sim::by_name("microburst")?;
    let rate = s.arrival_rate_per_s().context("Poisson source")?;
    let first = s.workload.bursts.as_ref().map_or(0, |b| b.first_at_ns) as f64 / 1e9;
    Ok(size.tasks.max((rate * first * 1.1).ceil() as u64))
}

pub(super) fn microburst(ctx: &Ctx, size: &Size, out: &Path) -> Result<Outcome> {
    let t0 = Instant::now();
    let train_tasks = microburst_train_tasks(size)?;
    let tsz = format!("tasks={train_tasks},warmup={}", size.warmup);
    let ms = ctx.train(
        size,
        "malcolm-strict",
        &ctx.agents,
        &with("microburst", &tsz),
        size.seed,
    )?;
    let mal = ctx.train(
        size,
        "malcolm",
        &ctx.agents,
        &with("microburst", &format!("{tsz},discipline=fcfs")),
        size.seed,
    )?;
    save_checkpoint(out, "malcolm-strict", &ms);
    save_checkpoint(out, "malcolm", &mal);
    let learners: HashMap<String, Arc<dyn PolicyFactory>> = [
        ("learner:ms".to_string(), ms.factory.clone()),
        ("learner:malcolm".to_string(), mal.factory.clone()),
    ]
    .into();
    let (edf, spec, burst_ms) = microburst_eval_scenario(size.tasks, size.warmup)?;
    let mut fcfs = edf.clone();
    fcfs.set("discipline", "fcfs")?;
    let fcfs_spec = format!("{spec} discipline=fcfs");
    let nan = f64::NAN;
    let mk = |label: &str, policy: &str, fc: bool| Point {
        label: label.into(),
        policy: policy.into(),
        scenario_spec: if fc { fcfs_spec.clone() } else { spec.clone() },
        scenario: if fc { fcfs.clone() } else { edf.clone() },
        x: nan,
    };
    let points = vec![
        mk(MS, "learner:ms", false),
        mk(MALCOLM, "learner:malcolm", true),
        mk(PO2_FCFS, "po2", true),
        mk("JSQ (EDF)", "jsq", false),
        mk("Slack-greedy (EDF)", "slack-greedy", false),
        mk("Po2 + EDF", "po2", false),
    ];
    write_config(
        ctx,
        "microburst",
        size,
        out,
        &points,
        serde_json::json!({"train_tasks": train_tasks, "burst_at_ms": burst_ms,
            "eval_scenario": serde_json::to_value(&edf)?}),
    )?;
    let runs = evaluate_points(ctx, size, &points, &learners)?;
    let rows = finish(out, &points, &runs)?;
    runs_latency_cdf(
        &out.join("latency_cdf.png"),
        &format!("Latency CDF, microburst rack (held-out seed {EVAL_SEED_BASE})"),
        &runs,
    )?;
    pooled_margin_plot(
        &out.join("margin_cdf.png"),
        "Latency / relative deadline, microburst rack (all classes, pooled seeds)",
        &points,
        &runs,
    )?;
    let mut md = header(
        "microburst",
        size,
        out,
        ctx,
        &points,
        &format!(
            "The design's chapter 6.5 experiment B: `microburst` (16 fast nodes at rho 0.6 plus \
             bursts of 128 short tasks with 10 us deadlines every 100 ms). For evaluation the \
             burst is moved to {burst_ms:.2} ms, the middle of the measured window, so every \
             held-out episode holds one burst. The learners were trained on the standard \
             schedule with {train_tasks}-task episodes{}.",
            if size.quick {
                " (too short to contain the first burst at 50 ms: the quick learners never saw one)"
            } else {
                " (long enough to contain the first burst at 50 ms)"
            }
        ),
    );
    md += &learner_line("Malcolm-Strict", &ms);
    md += &learner_line("Malcolm", &mal);
    md += "\n| policy | burst-task miss rate | burst tasks per seed | overall miss rate | goodput (on-time/s) | p99 (us) |\n|---|---:|---:|---:|---:|---:|\n";
    for (i, r) in rows.iter().enumerate() {
        let bt: Vec<f64> = runs
            .iter()
            .filter(|x| x.point == i)
            .map(|x| {
                x.report
                    .per_class
                    .get(&1)
                    .map_or(0.0, |c| c.finished as f64)
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} |",
            r.label,
            Metric::BurstMissPct.cell(r),
            MeanCi::of(&bt).mean,
            Metric::MissPct.cell(r),
            Metric::Goodput.cell(r),
            Metric::P99.cell(r)
        );
    }
    if let (Some(s), Some(m)) = (find(&rows, MS, nan), find(&rows, MALCOLM, nan)) {
        let _ = writeln!(
            md,
            "\nClaim: Malcolm-Strict misses fewer burst tasks than Malcolm ({:.3}% vs {:.3}%): {}.",
            s.burst_miss_rate * 100.0,
            m.burst_miss_rate * 100.0,
            verdict(s.burst_miss_rate < m.burst_miss_rate)
        );
    }
    md += "\nFigures: `latency_cdf.png`, `margin_cdf.png`. Data: `eval.csv`, `summary.csv` \
           (`burst_miss_rate` is Report.per_class[1]).\n";
    write_md(out, md, t0)
}
