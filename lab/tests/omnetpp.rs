//! `agent-server omnetpp` end to end at the --quick size: train Malcolm-Strict on Cmdenv runs
//! of `[Hetero]`, validate, evaluate against the baselines on held-out repetitions, write the
//! results folder. Skips (saying so) where OMNeT++ is absent (OMNETPP_ROOT unset and no
//! opp_run on PATH), as the README's test command does.

use clap::Parser;
use malcolm_lab::omnetpp::runner::Omnetpp;
use malcolm_lab::omnetpp::{repo_root, run, OmnetppArgs, Outcome};
use malcolm_serve::bridge::Shutdown;
use std::path::PathBuf;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    a: OmnetppArgs,
}

#[test]
fn an_absent_installation_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repo_root(None);
    assert!(Omnetpp::find_in(Some(dir.path().to_path_buf()), None, &repo).is_none());
    assert!(Omnetpp::find_in(None, Some(dir.path().as_os_str().to_owned()), &repo).is_none());
    assert!(Omnetpp::find_in(Some(PathBuf::new()), None, &repo).is_none());
}

#[test]
fn quick_train_and_evaluate_on_hetero() {
    let repo = repo_root(None);
    if Omnetpp::find(&repo).is_none() {
        eprintln!("OMNeT++ not found (set OMNETPP_ROOT or put opp_run on PATH): skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hetero");
    let cli = Cli::parse_from([
        "omnetpp",
        "--quick",
        "--ini-config",
        "Hetero",
        "--envs",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let Outcome::Done {
        markdown,
        interrupted,
        ..
    } = run(&cli.a, &Shutdown::new()).unwrap()
    else {
        panic!("OMNeT++ was found, the job must run");
    };
    assert!(!interrupted);
    for f in [
        "summary.md",
        "eval.csv",
        "summary.csv",
        "train_runs.csv",
        "validation.csv",
        "checkpoint.safetensors",
        "best.safetensors",
        "miss_rate.png",
        "learning_curve.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing; summary:\n{markdown}");
    }
    // 3 cases (the learner, Po2 + FCFS, slack-greedy) x 2 held-out repetitions.
    let mut r = csv::Reader::from_path(out.join("eval.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |name: &str| h.iter().position(|c| c == name).unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
    assert_eq!(rows.len(), 6, "{markdown}");
    for row in &rows {
        let rep: u64 = row[col("repetition")].parse().unwrap();
        assert!((100..102).contains(&rep), "held-out repetitions only");
        let tasks: u64 = row[col("tasks")].parse().unwrap();
        let miss: f64 = row[col("miss_rate")].parse().unwrap();
        let decisions: u64 = row[col("decisions")].parse().unwrap();
        assert!(tasks > 100, "a 1 ms Hetero run has hundreds of tasks");
        assert!((0.0..=1.0).contains(&miss));
        assert!(decisions > 0, "every case was served by the bridge");
    }
    let labels: Vec<&str> = rows.iter().map(|r| &r[col("label")]).collect();
    assert!(labels.contains(&"Malcolm-Strict (trained here)"));
    assert!(labels.contains(&"po2 + FCFS"));
    assert!(labels.contains(&"slack-greedy (EDF)"));
    assert!(
        markdown.contains("| Malcolm-Strict (trained here) | 2 |"),
        "{markdown}"
    );
    // Training used repetitions below the held-out ones.
    let train = std::fs::read_to_string(out.join("train_runs.csv")).unwrap();
    assert!(
        train.lines().count() >= 2,
        "at least one training run: {train}"
    );
    same_results_embedded_and_served(&out.join("best.safetensors"), dir.path());
}

/// The trained checkpoint and a baseline evaluated with the embedded agent inside the runs
/// and over the in-process ZeroMQ bridge: every column of eval.csv but the speed is equal
/// (the same decisions, so the same outcomes, counts and placements behind paused links).
fn same_results_embedded_and_served(ckpt: &std::path::Path, dir: &std::path::Path) {
    if malcolm_lab::omnetpp::runner::find_agent_library().is_none() {
        eprintln!("libmalcolm_agent.so not built: skipping embedded vs served (cargo build --release -p malcolm-agent-ffi)");
        return;
    }
    let eval = |name: &str, extra: &[&str]| -> Vec<Vec<String>> {
        let out = dir.join(name);
        let compare = format!("trained={}", ckpt.display());
        let mut args = vec![
            "omnetpp",
            "--quick",
            "--ini-config",
            "Hetero",
            "--minutes",
            "0",
            "--baselines",
            "slack-greedy",
            "--compare",
            &compare,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let cli = Cli::parse_from(args);
        let Outcome::Done { markdown, .. } = run(&cli.a, &Shutdown::new()).unwrap() else {
            panic!("OMNeT++ was found, the job must run");
        };
        let served = markdown.contains("by an in-process bridge over ZeroMQ");
        assert_eq!(served, !extra.is_empty(), "{markdown}");
        let mut r = csv::Reader::from_path(out.join("eval.csv")).unwrap();
        let h = r.headers().unwrap().clone();
        r.records()
            .map(|x| {
                let x = x.unwrap();
                h.iter()
                    .zip(x.iter())
                    .filter(|(c, _)| *c != "events_per_s" && *c != "wall_s")
                    .map(|(_, v)| v.to_string())
                    .collect()
            })
            .collect()
    };
    let embedded = eval("embedded", &[]);
    let served = eval("served", &["--eval-over-zeromq"]);
    assert_eq!(embedded.len(), 4);
    assert_eq!(embedded, served);
}
