//! Unit tests of the workload: estimate models, service-law moments and bounds, trace
//! validation and class means, micro-burst timing.

use super::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn estimates_follow_their_model() {
    let rng = || ChaCha8Rng::seed_from_u64(11);
    let mut exact = Estimator::new(ServiceEstimate::Exact, vec![], rng());
    assert_eq!(exact.estimate(0, 12_345), 12_345);
    let mut mean = Estimator::new(
        ServiceEstimate::ClassMean,
        vec![(0, 25_000.4), (1, 2_000.0)],
        rng(),
    );
    assert_eq!(mean.estimate(0, 12_345), 25_000);
    assert_eq!(mean.estimate(1, 7), 2_000);
    // A class without a known mean falls back to the task's own service.
    assert_eq!(mean.estimate(9, 77), 77);
    // Noisy: ln(estimate / true) ~ N(0, sigma^2). Mean within 4 standard errors of 0,
    // standard deviation within 2% of sigma (its standard error is sigma / sqrt(2n)).
    let sigma = 0.5;
    let n = 200_000;
    let mut noisy = Estimator::new(ServiceEstimate::Noisy { sigma }, vec![], rng());
    let logs: Vec<f64> = (0..n)
        .map(|_| (noisy.estimate(0, 1_000_000) as f64 / 1e6).ln())
        .collect();
    let m = logs.iter().sum::<f64>() / n as f64;
    let sd = (logs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    assert!(
        m.abs() < 4.0 * sigma / (n as f64).sqrt(),
        "mean log ratio {m}"
    );
    assert!(
        (sd - sigma).abs() < 4.0 * sigma / (2.0 * n as f64).sqrt(),
        "sd {sd}"
    );
    assert_eq!(
        ServiceEstimate::default(),
        ServiceEstimate::Noisy { sigma: 0.5 }
    );
    assert_eq!(
        ServiceEstimate::parse("class_mean"),
        Some(ServiceEstimate::ClassMean)
    );
    assert!(ServiceEstimate::parse("oracle").is_none());
    assert!(ServiceEstimate::Noisy { sigma: -1.0 }.validate().is_err());
}

#[test]
fn trace_class_means_are_per_class() {
    let t = |a, class, s| TraceTask {
        arrival_ns: a,
        origin: 0,
        service_ns: s,
        deadline_ns: a + 10 * s,
        size_bytes: 0,
        class,
        estimate_ns: None,
    };
    let src = TraceSource::Inline(vec![t(0, 0, 10), t(1, 1, 5), t(2, 0, 30), t(3, 1, 7)]);
    let mut m = trace_class_means(&src, 1).unwrap();
    m.sort_by_key(|e| e.0);
    assert_eq!(m, vec![(0, 20.0), (1, 6.0)]);
}

/// Sample mean and its standard error.
fn sample_mean(law: &ServiceLaw, n: usize) -> (f64, f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let xs: Vec<f64> = (0..n).map(|_| law.sample(&mut rng) as f64).collect();
    let m = xs.iter().sum::<f64>() / n as f64;
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    (m, (var / n as f64).sqrt())
}

#[test]
fn sample_means_match_closed_forms() {
    for law in [
        ServiceLaw::pareto(2.5),
        ServiceLaw::pareto(1.1),
        ServiceLaw::LogNormal {
            median_ns: 10_000,
            sigma: 0.5,
        },
        ServiceLaw::Exponential { mean_ns: 10_000 },
        ServiceLaw::Bimodal {
            short_ns: 10_000,
            long_ns: 1_000_000,
            p_long: 0.01,
        },
        ServiceLaw::Deterministic { ns: 5_000 },
    ] {
        let (m, se) = sample_mean(&law, 400_000);
        // Four standard errors, plus half a nanosecond of rounding per draw.
        let tol = 4.0 * se + 0.5;
        assert!(
            (m - law.mean_ns()).abs() < tol,
            "{law:?}: sample {m} +- {se}, closed form {}",
            law.mean_ns()
        );
    }
}

#[test]
fn pareto_stays_in_bounds() {
    let law = ServiceLaw::pareto(1.1);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for _ in 0..100_000 {
        let x = law.sample(&mut rng);
        assert!((DEFAULT_PARETO_MIN_NS..=DEFAULT_PARETO_MAX_NS).contains(&x));
    }
}

#[test]
fn trace_rejects_bad_origins_and_time_travel() {
    let t = |a, o| TraceTask {
        arrival_ns: a,
        origin: o,
        service_ns: 1,
        deadline_ns: a + 10,
        size_bytes: 0,
        class: 0,
        estimate_ns: None,
    };
    let mut g = TraceGen::open(&TraceSource::Inline(vec![t(5, 0), t(3, 0)]), 2, None).unwrap();
    assert!(g.next().is_err());
    assert!(TraceGen::open(&TraceSource::Inline(vec![t(5, 2)]), 2, None).is_err());
}

#[test]
fn bursts_are_sorted_and_periodic() {
    let est = Estimator::new(ServiceEstimate::Exact, vec![], ChaCha8Rng::seed_from_u64(4));
    let mut g = BurstGen::new(
        BurstSource::standard(2),
        2,
        ChaCha8Rng::seed_from_u64(3),
        est,
    );
    let mut last = 0;
    for i in 0..48 {
        let t = g.next().unwrap();
        assert!(t.arrival_ns >= last);
        assert_eq!(t.class, 1);
        let burst = i / 16;
        let start = DEFAULT_BURST_PERIOD_NS / 2 + burst as u64 * DEFAULT_BURST_PERIOD_NS;
        assert!(t.arrival_ns >= start && t.arrival_ns < start + DEFAULT_BURST_SPREAD_NS);
        last = t.arrival_ns;
    }
}
