//! `agent-server`: the command-line front end. The server lives in `malcolm-serve`, the lab
//! (training, evaluation, experiments, benchmarks, replay) in `malcolm-lab`; this file parses
//! the command line, sets up logging and signals, and prints what they return.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use malcolm_lab::cli::{BenchArgs, EvalArgs, ReplayArgs, TrainArgs};
use malcolm_lab::env_process::EnvArgs;
use malcolm_lab::experiment::ExperimentArgs;
use malcolm_lab::omnetpp::{OmnetppArgs, Outcome};
use malcolm_serve::bridge::Shutdown;
use malcolm_serve::server::{ServeArgs, Server};
use std::path::PathBuf;
use std::time::Duration;

/// Agent server for the Malcolm-Strict co-simulation bridge.
///
/// Environments (OMNeT++ runs, or the embedded rack simulator) connect over ZeroMQ and get a
/// target node for every pending task; an operator steers the server over gRPC. Every flag
/// can also be set by its environment variable (shown in each help line) or by a TOML file
/// given with --config whose keys are the long flag names, top level or under [serve],
/// [train], ... tables. Precedence: flag > environment > file > default.
#[derive(Parser, Debug)]
#[command(version, propagate_version = true)]
struct Cli {
    /// Config file (TOML) with defaults for the flags.
    #[arg(long, global = true, env = "MALCOLM_CONFIG")]
    config: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `malcolm_serve=debug`.
    #[arg(long, global = true, env = "MALCOLM_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve external environments (OMNeT++) over ZeroMQ, with the gRPC control plane.
    Serve(ServeArgs),
    /// The main job: train on an embedded scenario, checkpoint, evaluate against the baselines
    /// on held-out seeds, write a results folder (CSV, markdown, PNG plots).
    Train(TrainArgs),
    /// Evaluate policies side by side on an embedded scenario with held-out seeds.
    Eval(EvalArgs),
    /// Replay a recorded trace through the agent: decision agreement, decision latency, and
    /// the recorded workload re-run in the embedded simulator under the chosen policy.
    Replay(ReplayArgs),
    /// Benchmarks that print their figures.
    Bench(BenchArgs),
    /// Run the embedded rack simulator as an environment process against a running server
    /// (what an OMNeT++ run does, without OMNeT++).
    Env(EnvArgs),
    /// Probe a server's gRPC health service; exit 0 when SERVING (container healthchecks).
    Health(HealthArgs),
    /// The design's experiments (hetero, barrier-ablation, heavy-tail, staleness, load,
    /// microburst, cvar, or all): train, evaluate on held-out seeds, write CSV, markdown and
    /// PNG figures with 95% intervals into a results folder.
    #[command(name = "experiment")]
    Experiment(ExperimentArgs),
    /// Train Malcolm-Strict on OMNeT++ Cmdenv runs of an ini config (validating on
    /// validation repetitions, keeping the best checkpoint), then evaluate it greedily on
    /// held-out repetitions against Po2 + FCFS and slack-greedy; write a results folder (CSV,
    /// markdown with 95% intervals, PNG). Skips with a message where OMNeT++ is absent.
    Omnetpp(OmnetppArgs),
}

#[derive(Args, Debug)]
struct HealthArgs {
    /// Control-plane address.
    #[arg(long, env = "MALCOLM_HEALTH_ADDR", default_value = "127.0.0.1:50051")]
    addr: String,
    /// Seconds before giving up.
    #[arg(long, default_value_t = 3.0)]
    timeout_s: f64,
}

impl Command {
    /// The config file section of this subcommand.
    fn section(&self) -> &'static str {
        match self {
            Command::Serve(_) => "serve",
            Command::Train(_) => "train",
            Command::Eval(_) => "eval",
            Command::Replay(_) => "replay",
            Command::Bench(_) => "bench",
            Command::Env(_) => "env",
            Command::Health(_) => "health",
            Command::Experiment(_) => "experiment",
            Command::Omnetpp(_) => "omnetpp",
        }
    }
}

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain; no backtrace for user-facing errors.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    // The config file only fills environment variables that are not set yet, before clap
    // reads them, so flags and real environment variables win.
    let pre = Cli::try_parse();
    if let Ok(cli) = &pre {
        if let Some(path) = &cli.config {
            for (k, v) in malcolm_serve::config::env_from_file(path, cli.command.section())? {
                if std::env::var_os(&k).is_none() {
                    // SAFETY: single-threaded here; no other thread reads the environment yet.
                    unsafe { std::env::set_var(k, v) };
                }
            }
        }
    }
    let cli = match pre {
        Ok(c) if c.config.is_some() => Cli::parse(),
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("--log")?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(a) => serve(a),
        Command::Train(a) => train(a),
        Command::Eval(a) => print(malcolm_lab::cli::eval(a)?),
        Command::Replay(a) => print(malcolm_lab::cli::replay(a)?),
        Command::Bench(a) => print(malcolm_lab::cli::bench(a)?),
        Command::Env(a) => malcolm_lab::env_process::run(&a, |env_id, e| {
            let r = &e.report;
            println!(
                "{env_id} episode {} seed {}: {} tasks, miss rate {:.3}%, goodput {:.0}/s, p99 {:.1} us",
                e.index,
                e.seed,
                r.finished,
                r.miss_rate * 100.0,
                r.goodput_per_s,
                r.latency.p99_ns / 1e3
            );
        }),
        Command::Health(a) => health(a),
        Command::Experiment(a) => malcolm_lab::experiment::run_cli(a),
        Command::Omnetpp(a) => omnetpp(a),
    }
}

fn print(text: String) -> Result<()> {
    println!("{text}");
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Resolves on Ctrl-C or SIGTERM (docker stop).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let rt = runtime()?;
    rt.block_on(async move {
        let server = Server::start(a).await?;
        let control = server
            .control_addr()
            .map_or_else(|| "?".to_string(), |c| c.to_string());
        // One machine-readable line on stdout for scripts that start the server on port 0.
        println!(
            "agent-server ready: bridge {} control {control} policy {}",
            server.bridge.endpoints().join(","),
            server.shared.policy_name()
        );
        tracing::info!(
            bridge = ?server.bridge.endpoints(),
            control = %control,
            policy = %server.shared.policy_name(),
            "agent server ready"
        );
        server.run(shutdown_signal()).await?;
        Ok(())
    })
}

fn train(a: TrainArgs) -> Result<()> {
    let shared = a.policy.shared()?;
    let (opts, banner) = a.job()?;
    let stop = Shutdown::new();
    let rt = runtime()?;
    {
        let stop = stop.clone();
        rt.spawn(async move {
            shutdown_signal().await;
            tracing::warn!("interrupted: finishing the running episodes, saving a checkpoint");
            stop.trigger();
        });
    }
    if let Some(addr) = &a.control {
        let (shared, addr) = (shared.clone(), addr.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(&addr))
            .with_context(|| format!("binding the control plane on {addr}"))?;
        let bound = listener.local_addr()?;
        println!("agent-server control plane on {bound} while training");
        tracing::info!(control = %bound, "control plane up while training");
        rt.spawn(malcolm_serve::control::run(
            listener,
            shared,
            std::future::pending(),
        ));
    }
    eprintln!("{banner}");
    let summary = malcolm_lab::job::run_main_job(shared, &opts, &stop)?;
    if summary.interrupted {
        eprintln!(
            "Interrupted after {} episodes; checkpoint and learning curve written to {}",
            summary.curve_len,
            opts.out.display()
        );
        return Ok(());
    }
    println!("{}", summary.markdown);
    println!("Results: {}", opts.out.display());
    Ok(())
}

fn omnetpp(a: OmnetppArgs) -> Result<()> {
    let stop = Shutdown::new();
    let rt = runtime()?;
    {
        let stop = stop.clone();
        rt.spawn(async move {
            shutdown_signal().await;
            tracing::warn!("interrupted: stopping the OMNeT++ runs, saving the checkpoint");
            stop.trigger();
        });
    }
    match malcolm_lab::omnetpp::run(&a, &stop)? {
        Outcome::Skipped(why) => println!("{why}"),
        Outcome::Done {
            out,
            interrupted: true,
            ..
        } => eprintln!(
            "Interrupted; checkpoint and what finished written to {}",
            out.display()
        ),
        Outcome::Done { out, markdown, .. } => {
            println!("{markdown}");
            println!("Results: {}", out.display());
        }
    }
    Ok(())
}

fn health(a: HealthArgs) -> Result<()> {
    use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
    let rt = runtime()?;
    let status = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", a.addr))?
            .connect_timeout(Duration::from_secs_f64(a.timeout_s))
            .timeout(Duration::from_secs_f64(a.timeout_s))
            .connect()
            .await?;
        let reply = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        anyhow::Ok(reply.into_inner().status)
    })?;
    if status == 1 {
        println!("SERVING");
        Ok(())
    } else {
        bail!("health status {status} (not SERVING)")
    }
}
