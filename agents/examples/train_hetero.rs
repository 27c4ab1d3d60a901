//! Trains Malcolm-Strict on the embedded `hetero` scenario within a wall-clock budget, prints
//! the learning curve, then compares it on held-out seeds with power-of-2 + FCFS and the
//! slack-aware greedy heuristic (both baselines from `malcolm_policies`).
//!
//! `cargo run --release -p malcolm-agents --example train_hetero -- [--budget-s 540]
//!  [--scenario SPEC] [--out DIR] [--config agents.json] [--lr X] [--discount X]
//!  [--alpha X] [--seed N] [--malcolm-budget-s 90] [--seeds 1001,1002,1003] [--load CKPT]`
//!
//! `--load CKPT --budget-s 0 --malcolm-budget-s 0` only evaluates a saved checkpoint.
//!
//! The original Malcolm (actor-critic, FCFS nodes as in the design) is trained afterwards for
//! `--malcolm-budget-s` and joins the comparison (0 skips it).
//!
//! Writes `DIR/learning_curve.csv`, `DIR/comparison.csv` and `DIR/malcolm_strict.safetensors`.

use malcolm_agents::{AgentsConfig, MalcolmFactory, StrictFactory};
use malcolm_policies::{Decision, Mode, Policy, PolicyFactory};
use malcolm_proto::bridge::Placement;
use rack_sim::{run_policy, scenario, RackSim, Report, SimEvent};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// rack-sim's `hetero`: 2 fast : 3 slow, tight deadlines (F = 3) so work sent to a slow node
/// (5x slower) misses by construction, at a load just above what the fast nodes can carry.
const DEFAULT_SCENARIO: &str = "hetero";
const TRAIN_TASKS: &str = "tasks=30000,warmup=0";
const EVAL_TASKS: &str = "tasks=30000,warmup=3000";
/// How far (in updates) the learner may fall behind the replay ratio before the
/// environment waits for it.
const MAX_LAG_UPDATES: u64 = 64;

struct Args {
    budget: Duration,
    scenario: String,
    out: PathBuf,
    config: AgentsConfig,
    seeds: Vec<u64>,
    malcolm_budget: Duration,
    load: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut a = Args {
        budget: Duration::from_secs(540),
        scenario: DEFAULT_SCENARIO.into(),
        out: PathBuf::from("target/train_hetero"),
        config: AgentsConfig::default(),
        seeds: vec![1001, 1002, 1003],
        malcolm_budget: Duration::from_secs(90),
        load: None,
    };
    a.config.iqn.eps_decay_decisions = 60_000;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let v = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--budget-s" => a.budget = Duration::from_secs_f64(v.parse().expect("--budget-s")),
            "--scenario" => a.scenario = v,
            "--out" => a.out = v.into(),
            "--config" => {
                let text = std::fs::read_to_string(&v).expect("--config file");
                a.config = serde_json::from_str(&text).expect("--config json");
            }
            "--lr" => a.config.iqn.lr = v.parse().expect("--lr"),
            "--discount" => a.config.iqn.discount = v.parse().expect("--discount"),
            "--alpha" => a.config.iqn.cvar_alpha = v.parse().expect("--alpha"),
            "--load" => a.load = Some(v.into()),
            "--seed" => a.config.iqn.seed = v.parse().expect("--seed"),
            "--malcolm-budget-s" => {
                a.malcolm_budget = Duration::from_secs_f64(v.parse().expect("--malcolm-budget-s"))
            }
            "--seeds" => a.seeds = v.split(',').map(|s| s.parse().expect("--seeds")).collect(),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// User + system CPU seconds of this process (all threads).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = 100.0; // USER_HZ on Linux
    let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut + st) / tick
}

fn sim(spec: &str, tasks: &str, discipline: &str, seed: u64) -> RackSim {
    // `name[:k=v,...]`: append our keys after the user's.
    let sep = if spec.contains(':') { ',' } else { ':' };
    let s = scenario::by_name(&format!("{spec}{sep}{tasks},discipline={discipline}"))
        .expect("scenario");
    RackSim::new(s, seed).expect("sim")
}

/// One training episode driven by hand so the env can wait for a lagging learner.
fn train_episode(
    factory: &StrictFactory,
    spec: &str,
    seed: u64,
    deadline: Instant,
    total: &mut u64,
) -> Report {
    let mut sim = sim(spec, TRAIN_TASKS, "edf", seed);
    let mut policy = factory
        .new_session(&sim.hello("train"), seed)
        .expect("session");
    let c = factory.config();
    let mut out = Decision::default();
    loop {
        match sim.next_event() {
            SimEvent::Step(step) => {
                policy.observe(&step.outcomes);
                policy.decide(&step, &mut out).expect("decide");
                let step_tasks = step.tasks.len() as u64;
                let p = Placement {
                    step_index: step.step_index,
                    targets: out.targets.clone(),
                    policy_version: policy.version(),
                    scores: Vec::new(),
                    hold_ns: out.hold_ns.clone(),
                };
                sim.apply(&p).expect("apply");
                sim.recycle(step);
                // Keep the replay ratio: about one update per `update_every` transitions
                // (decisions wait for their outcomes, hence the allowance).
                *total += step_tasks;
                if *total % 32 < step_tasks {
                    let want =
                        total.saturating_sub(c.learn_start as u64 + 1024) / c.update_every as u64;
                    while factory.status().updates + MAX_LAG_UPDATES < want
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
            }
            SimEvent::EpisodeEnd(end) => {
                policy.observe(&end.outcomes);
                policy.end_episode(&end);
                return sim.report();
            }
        }
    }
}

fn eval_policy(policy: Box<dyn Policy>, spec: &str, discipline: &str, seed: u64) -> Report {
    let mut s = sim(spec, EVAL_TASKS, discipline, seed);
    run_policy(&mut s, policy, 1).expect("eval run")
}

fn eval_strict(factory: &StrictFactory, spec: &str, seed: u64) -> Report {
    let s = sim(spec, EVAL_TASKS, "edf", seed);
    let p = factory
        .new_session(&s.hello("eval"), seed)
        .expect("session");
    eval_policy(p, spec, "edf", seed)
}

fn baseline(name: &str, spec: &str, discipline: &str, seed: u64) -> Report {
    let f =
        malcolm_policies::baselines::factory_by_name(name, &Default::default()).expect("baseline");
    let s = sim(spec, EVAL_TASKS, discipline, seed);
    let p = f.new_session(&s.hello("baseline"), seed).expect("session");
    eval_policy(p, spec, discipline, seed)
}

fn main() {
    let args = parse_args();
    std::fs::create_dir_all(&args.out).expect("out dir");
    println!(
        "scenario {} | budget {:?} | iqn {:?}",
        args.scenario, args.budget, args.config.iqn
    );
    let factory = StrictFactory::new(args.config.iqn.clone()).expect("factory");
    if let Some(p) = &args.load {
        let info = factory.load_checkpoint(p).expect("load checkpoint");
        println!("loaded {} (version {})", p.display(), info.policy_version);
    }
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let deadline = t0 + args.budget;
    let mut curve = String::from(
        "episode,wall_s,cpu_s,decisions,updates,loss,policy_version,train_miss_rate,train_goodput_per_s,eval_miss_rate,eval_goodput_per_s\n",
    );
    println!(
        "{:>3} {:>7} {:>7} {:>8} {:>9} {:>7} {:>10} {:>10} {:>10}",
        "ep", "wall_s", "cpu_s", "updates", "loss", "eps", "train_miss", "eval_miss", "eval_gput"
    );
    let mut episode = 0u64;
    let mut decisions = 0u64;
    while Instant::now() < deadline {
        factory.set_mode(Mode::Train);
        let r = train_episode(
            &factory,
            &args.scenario,
            1 + episode,
            deadline,
            &mut decisions,
        );
        factory.set_mode(Mode::Eval);
        // Validation seed 500 (never one of the held-out seeds).
        let v = eval_strict(&factory, &args.scenario, 500);
        let st = factory.status();
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        let eps = {
            let c = factory.config();
            let frac = (1.0 - decisions as f64 / c.eps_decay_decisions as f64).max(0.0);
            c.eps_end + (c.eps_start - c.eps_end) * frac
        };
        println!(
            "{episode:>3} {wall:>7.1} {cpu:>7.1} {:>8} {:>9.5} {eps:>7.3} {:>10.4} {:>10.4} {:>10.0}",
            st.updates, st.loss, r.miss_rate, v.miss_rate, v.goodput_per_s
        );
        let _ = writeln!(
            curve,
            "{episode},{wall:.1},{cpu:.1},{decisions},{},{:.6},{},{:.6},{:.1},{:.6},{:.1}",
            st.updates,
            st.loss,
            st.policy_version,
            r.miss_rate,
            r.goodput_per_s,
            v.miss_rate,
            v.goodput_per_s
        );
        std::fs::write(args.out.join("learning_curve.csv"), &curve).expect("curve csv");
        episode += 1;
    }
    factory.set_mode(Mode::Frozen);
    let ckpt = factory
        .save_checkpoint(&args.out.join("malcolm_strict.safetensors"))
        .expect("checkpoint");
    println!(
        "trained {episode} episodes in {:.0} s wall, {:.0} s CPU; checkpoint {} ({} bytes, version {})",
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0,
        ckpt.path.display(),
        ckpt.bytes,
        ckpt.policy_version
    );

    // The original Malcolm on FCFS nodes, trained on the same scenario for its own budget.
    let malcolm = (!args.malcolm_budget.is_zero()).then(|| {
        let f = MalcolmFactory::new(args.config.malcolm.clone()).expect("malcolm factory");
        let t = Instant::now();
        let mut ep = 0u64;
        while t.elapsed() < args.malcolm_budget {
            let mut s = sim(&args.scenario, TRAIN_TASKS, "fcfs", 1 + ep);
            let p = f.new_session(&s.hello("malcolm"), 1 + ep).expect("session");
            let r = run_policy(&mut s, p, 1).expect("malcolm episode");
            println!(
                "malcolm episode {ep}: train miss {:.4}, updates {}",
                r.miss_rate,
                f.status().updates
            );
            ep += 1;
        }
        f.set_mode(Mode::Eval);
        f
    });

    let mut table = String::from("policy,discipline,seed,miss_rate,goodput_per_s,p99_us\n");
    let mut rows: Vec<(String, Vec<Report>)> = Vec::new();
    let runs: [(&str, &str); 5] = [
        ("malcolm-strict", "edf"),
        ("malcolm", "fcfs"),
        ("po2", "fcfs"),
        ("slack-greedy", "edf"),
        ("random", "edf"),
    ];
    for (name, disc) in runs {
        if name == "malcolm" && malcolm.is_none() {
            continue;
        }
        let reports: Vec<Report> = args
            .seeds
            .iter()
            .map(|&seed| {
                if name == "malcolm-strict" {
                    eval_strict(&factory, &args.scenario, seed)
                } else if let (true, Some(f)) = (name == "malcolm", &malcolm) {
                    let s = sim(&args.scenario, EVAL_TASKS, disc, seed);
                    let p = f.new_session(&s.hello("eval"), seed).expect("session");
                    eval_policy(p, &args.scenario, disc, seed)
                } else {
                    baseline(name, &args.scenario, disc, seed)
                }
            })
            .collect();
        for (seed, r) in args.seeds.iter().zip(&reports) {
            let _ = writeln!(
                table,
                "{name},{disc},{seed},{:.6},{:.1},{:.1}",
                r.miss_rate,
                r.goodput_per_s,
                r.latency.p99_ns / 1e3
            );
        }
        rows.push((format!("{name}+{disc}"), reports));
    }
    std::fs::write(args.out.join("comparison.csv"), &table).expect("comparison csv");
    println!("\nheld-out seeds {:?} ({}):", args.seeds, EVAL_TASKS);
    println!(
        "{:<22} {:>10} {:>14} {:>10}",
        "policy", "miss_rate", "goodput/s", "p99_us"
    );
    for (name, reports) in &rows {
        let n = reports.len() as f64;
        let miss = reports.iter().map(|r| r.miss_rate).sum::<f64>() / n;
        let gput = reports.iter().map(|r| r.goodput_per_s).sum::<f64>() / n;
        let p99 = reports.iter().map(|r| r.latency.p99_ns / 1e3).sum::<f64>() / n;
        println!("{name:<22} {miss:>10.4} {gput:>14.0} {p99:>10.1}");
    }
    println!(
        "dropped transitions (full channel): {}",
        factory.dropped_transitions()
    );
}
