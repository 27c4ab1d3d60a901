//! The learner's distributional estimates at the shipped settings (kappa, reward scale, taus,
//! network shape), against known answers. Every sample goes through the real pipeline:
//! transitions into the replay, `Learner::update` (shared taus, fused quantile Huber loss,
//! flat Adam), `publish`, and the plain-Rust actor's heads.
//!
//! - Quantiles of a known return law at the agent's scale (a miss is about -1 after the
//!   reward scale): Z = -(0.2 + 0.3 E), E ~ Exp(1), so q(tau) = -0.2 + 0.3 ln(tau) and
//!   CVaR_alpha = -0.2 + 0.3 (ln(alpha) - 1).
//! - A two-arm bandit whose risky arm has the better mean and the worse lower tail: CVaR_0.1
//!   picks the safe arm, the mean (alpha = 1) picks the risky one.

use malcolm_agents::actor::Scratch;
use malcolm_agents::features::{CANDIDATE_FEATURES, SHARED_FEATURES};
use malcolm_agents::iqn::midpoint_taus;
use malcolm_agents::replay::Transition;
use malcolm_agents::{IqnConfig, Learner};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn law_quantile(tau: f64) -> f64 {
    -0.2 + 0.3 * tau.ln()
}

fn law_cvar(alpha: f64) -> f64 {
    -0.2 + 0.3 * (alpha.ln() - 1.0)
}

fn law_sample(rng: &mut ChaCha8Rng) -> f32 {
    let e = -(1.0 - rng.random::<f64>()).ln();
    (-(0.2 + 0.3 * e)) as f32
}

#[test]
fn closed_forms_of_the_law() {
    // Independent check of the closed forms by a fine Riemann sum over tau.
    for alpha in [0.05, 0.1, 0.5, 1.0] {
        let k = 200_000;
        let num: f64 = (0..k)
            .map(|i| law_quantile(alpha * (i as f64 + 0.5) / k as f64))
            .sum::<f64>()
            / k as f64;
        assert!((num - law_cvar(alpha)).abs() < 1e-3, "alpha {alpha}: {num}");
    }
    // And the sampler against the median and the 10% quantile.
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut v: Vec<f32> = (0..200_000).map(|_| law_sample(&mut rng)).collect();
    v.sort_by(f32::total_cmp);
    assert!((v[100_000] as f64 - law_quantile(0.5)).abs() < 0.005);
    assert!((v[20_000] as f64 - law_quantile(0.1)).abs() < 0.01);
}

/// A learner on a one-step problem (discount 0) with the shipped kappa, taus and network; only
/// the learning rate is raised so the tests converge in seconds.
fn bandit_learner(seed: u64) -> Learner {
    tch::set_num_threads(1);
    Learner::new(IqnConfig {
        discount: 0.0,
        batch: 128,
        lr: 1e-3,
        learn_start: 512,
        replay_capacity: 50_000,
        seed,
        ..Default::default()
    })
    .unwrap()
}

fn transition(shared: &[f32], chosen: &[f32], reward: f32) -> Transition {
    Transition {
        shared: shared.into(),
        chosen: chosen.into(),
        reward,
        discount: 0.0,
        next_shared: Box::new([]),
        next_cand: Box::new([]),
    }
}

fn features(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
}

/// Mean of the actor's scores of `cand` (one row per candidate) with the head over `taus`.
fn scores(learner: &mut Learner, shared: &[f32], cand: &[f32], taus: &[f32]) -> Vec<f32> {
    let snap = learner.publish();
    let head = snap.actor.head(taus);
    let mut sh = Vec::new();
    snap.actor.shared_hidden(shared, &mut sh);
    let m = cand.len() / CANDIDATE_FEATURES;
    let mut out = vec![0f32; m];
    snap.actor
        .score(&sh, m, cand, &head, &mut Scratch::default(), &mut out);
    out
}

#[test]
fn quantiles_and_cvar_of_a_known_return_law() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut learner = bandit_learner(11);
    let shared = features(&mut rng, SHARED_FEATURES);
    let chosen = features(&mut rng, CANDIDATE_FEATURES);
    for _ in 0..40_000 {
        learner.push(&transition(&shared, &chosen, law_sample(&mut rng)));
    }
    for _ in 0..2_000 {
        learner.update();
    }
    // A lower rate at the end, as a schedule would, so the estimate is not SGD noise.
    learner.set_lr(1e-4);
    for _ in 0..1_000 {
        learner.update();
    }
    for tau in [0.1f32, 0.25, 0.5, 0.75, 0.9] {
        let got = scores(&mut learner, &shared, &chosen, &[tau])[0] as f64;
        let want = law_quantile(tau as f64);
        eprintln!("tau {tau}: {got:.4} (exact {want:.4})");
        assert!(
            (got - want).abs() <= 0.05 * want.abs(),
            "tau {tau}: {got} vs {want} (more than 5% off)"
        );
    }
    let k = learner.config.k_tau;
    for alpha in [0.05, 0.10] {
        let got = scores(&mut learner, &shared, &chosen, &midpoint_taus(alpha, k))[0] as f64;
        let want = law_cvar(alpha);
        eprintln!("CVaR_{alpha} ({k} midpoint taus): {got:.4} (closed form {want:.4})");
        assert!(
            (got - want).abs() <= 0.10 * want.abs(),
            "CVaR_{alpha}: {got} vs {want} (more than 10% off)"
        );
    }
}

#[test]
fn cvar_picks_the_safe_arm_where_the_mean_picks_the_risky_one() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut learner = bandit_learner(5);
    let shared = features(&mut rng, SHARED_FEATURES);
    let safe = features(&mut rng, CANDIDATE_FEATURES);
    let risky = features(&mut rng, CANDIDATE_FEATURES);
    // Safe: -0.5 +- 0.02. Risky: 0 or -0.8 with equal odds, mean -0.4 (better by 0.1, three
    // times the estimates' run-to-run spread), but its worst 10% are all -0.8.
    for _ in 0..20_000 {
        let r_safe = -0.5 + rng.random_range(-0.02..0.02);
        learner.push(&transition(&shared, &safe, r_safe));
        let r_risky = if rng.random::<bool>() { 0.0 } else { -0.8 };
        learner.push(&transition(&shared, &risky, r_risky));
    }
    for _ in 0..3_000 {
        learner.update();
    }
    let both: Vec<f32> = safe.iter().chain(risky.iter()).copied().collect();
    let k = learner.config.k_tau;
    let cvar = scores(&mut learner, &shared, &both, &midpoint_taus(0.1, k));
    let mean = scores(&mut learner, &shared, &both, &midpoint_taus(1.0, 32));
    eprintln!(
        "CVaR_0.1 safe {:.3} risky {:.3}; mean safe {:.3} risky {:.3}",
        cvar[0], cvar[1], mean[0], mean[1]
    );
    assert!(
        cvar[0] > cvar[1] + 0.2,
        "CVaR must prefer the safe arm: {cvar:?}"
    );
    assert!(
        mean[1] > mean[0],
        "the mean must prefer the risky arm: {mean:?}"
    );
    assert!(
        (cvar[1] + 0.8).abs() < 0.08,
        "risky arm's CVaR_0.1 is -0.8: {cvar:?}"
    );
}
