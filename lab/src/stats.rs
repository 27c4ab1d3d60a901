//! Small statistics for results: mean and a Student-t 95% confidence interval over seeds.

/// Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// Mean and the half-width of its 95% confidence interval (0 for a single sample).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MeanCi {
    pub mean: f64,
    pub half_width: f64,
    pub n: usize,
}

impl MeanCi {
    pub fn of(xs: &[f64]) -> Self {
        let n = xs.len();
        if n == 0 {
            return Self {
                mean: f64::NAN,
                half_width: f64::NAN,
                n,
            };
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        if n == 1 {
            return Self {
                mean,
                half_width: 0.0,
                n,
            };
        }
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let t = T975.get(n - 2).copied().unwrap_or(1.960);
        Self {
            mean,
            half_width: t * (var / n as f64).sqrt(),
            n,
        }
    }

    pub fn lo(&self) -> f64 {
        self.mean - self.half_width
    }
    pub fn hi(&self) -> f64 {
        self.mean + self.half_width
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_interval() {
        // Samples 1..=5: mean 3, s = sqrt(2.5), t(4) = 2.776 -> 2.776 * sqrt(2.5/5) = 1.963.
        let m = MeanCi::of(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m.mean, 3.0);
        assert!((m.half_width - 1.96292).abs() < 1e-4, "{m:?}");
        assert_eq!(MeanCi::of(&[7.0]).half_width, 0.0);
        assert!(MeanCi::of(&[]).mean.is_nan());
    }
}
