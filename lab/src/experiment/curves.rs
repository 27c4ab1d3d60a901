//! Learning curves of several training runs side by side: bin each run's episodes by
//! training progress (decisions served), average within a bin, then mean and 95% interval
//! across runs; and the late-training level of one run (its training stability).

use crate::stats::MeanCi;

/// One bin of the aggregated curve.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CurveBin {
    /// Bin centre on the x axis.
    pub x: f64,
    pub mean: f64,
    pub ci95: f64,
    /// Runs with at least one point in this bin.
    pub runs: usize,
}

/// Aggregates `curves` (each a list of (x, y) points) into `bins` equal bins over
/// [0, max x]. A run contributes the mean of its points in a bin; bins no run reaches are
/// left out.
pub fn aggregate(curves: &[Vec<(f64, f64)>], bins: usize) -> Vec<CurveBin> {
    let bins = bins.max(1);
    let max_x = curves
        .iter()
        .flatten()
        .map(|p| p.0)
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max);
    if max_x <= 0.0 {
        return vec![];
    }
    let w = max_x / bins as f64;
    let bin_of = |x: f64| (((x / w).ceil() as usize).max(1) - 1).min(bins - 1);
    (0..bins)
        .filter_map(|b| {
            let per_run: Vec<f64> = curves
                .iter()
                .filter_map(|c| {
                    let ys: Vec<f64> = c
                        .iter()
                        .filter(|p| p.0.is_finite() && p.1.is_finite() && bin_of(p.0) == b)
                        .map(|p| p.1)
                        .collect();
                    (!ys.is_empty()).then(|| ys.iter().sum::<f64>() / ys.len() as f64)
                })
                .collect();
            if per_run.is_empty() {
                return None;
            }
            let m = MeanCi::of(&per_run);
            Some(CurveBin {
                x: (b as f64 + 0.5) * w,
                mean: m.mean,
                ci95: m.half_width,
                runs: per_run.len(),
            })
        })
        .collect()
}

/// Mean y over the last `frac` of a run's x range (at least its last point).
pub fn late_mean(curve: &[(f64, f64)], frac: f64) -> f64 {
    let Some(max_x) = curve.iter().map(|p| p.0).reduce(f64::max) else {
        return f64::NAN;
    };
    let min_x = curve.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let from = max_x - (max_x - min_x) * frac.clamp(0.0, 1.0);
    let ys: Vec<f64> = curve.iter().filter(|p| p.0 >= from).map(|p| p.1).collect();
    ys.iter().sum::<f64>() / ys.len() as f64
}

/// Sample standard deviation (0 for fewer than two values).
pub fn std_dev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_over_runs() {
        // Two runs over x in (0, 10]; 2 bins: (0, 5] and (5, 10].
        let a = vec![(1.0, 1.0), (4.0, 3.0), (6.0, 10.0), (10.0, 10.0)];
        let b = vec![(2.0, 5.0), (9.0, 20.0)];
        let bins = aggregate(&[a, b], 2);
        assert_eq!(bins.len(), 2);
        // Bin 0: run a mean 2, run b 5 -> mean 3.5, t(1) * s / sqrt(2) with s = 2.1213.
        assert!((bins[0].x - 2.5).abs() < 1e-12);
        assert!((bins[0].mean - 3.5).abs() < 1e-12);
        assert!((bins[0].ci95 - 12.706 * 1.5).abs() < 1e-9, "{:?}", bins[0]);
        assert_eq!(bins[0].runs, 2);
        // Bin 1: run a 10, run b 20.
        assert!((bins[1].mean - 15.0).abs() < 1e-12);
        // A bin reached by one run only has no interval; unreached bins are dropped.
        let c = vec![(1.0, 2.0)];
        let d = vec![(1.0, 4.0), (10.0, 6.0)];
        let bins = aggregate(&[c, d], 5);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[1].runs, 1);
        assert_eq!(bins[1].ci95, 0.0);
        assert!(aggregate(&[], 3).is_empty());
    }

    #[test]
    fn late_level_and_spread() {
        let c = vec![(0.0, 9.0), (5.0, 5.0), (8.0, 2.0), (10.0, 4.0)];
        // Last 25% of [0, 10]: x >= 7.5 -> mean(2, 4) = 3.
        assert!((late_mean(&c, 0.25) - 3.0).abs() < 1e-12);
        assert!((late_mean(&c, 0.0) - 4.0).abs() < 1e-12);
        assert!(late_mean(&[], 0.5).is_nan());
        assert!((std_dev(&[1.0, 3.0]) - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(std_dev(&[1.0]), 0.0);
    }
}
