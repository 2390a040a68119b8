//! A small Gaussian process for the knob search: a Matérn-5/2 kernel with one length scale per
//! knob (a choice knob counts "same or different"), a learned noise level, hyperparameters fitted
//! by maximising the marginal likelihood under weak priors, and the expected improvement of a
//! candidate over the best predicted value.
//!
//! Everything is in plain `f64` loops: with at most a few hundred experiments the matrices are
//! tiny, and plain loops keep the arithmetic the same on every run (a resumed search must
//! propose what the first run would have).

/// A point of the search space: positions of the numeric knobs in `[0, 1]`, indices of the
/// choice knobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub x: Vec<f64>,
    pub c: Vec<usize>,
}

/// Kernel hyperparameters, all as natural logarithms.
#[derive(Debug, Clone)]
struct Hyper {
    /// One length scale per numeric knob, then one per choice knob.
    length: Vec<f64>,
    signal: f64,
    noise: f64,
}

/// Bounds of the hyperparameters (natural logs) and the centres and widths of their priors.
const LENGTH_BOUNDS: (f64, f64) = (-4.6, 3.0);
const LENGTH_PRIOR: (f64, f64) = (-0.7, 1.0);
const SIGNAL_BOUNDS: (f64, f64) = (-4.6, 2.3);
const SIGNAL_PRIOR: (f64, f64) = (0.0, 1.0);
const NOISE_BOUNDS: (f64, f64) = (-13.8, 0.0);
const NOISE_PRIOR: (f64, f64) = (-4.6, 2.0);
/// Steps of the hyperparameter fit.
const FIT_STEPS: usize = 80;

const SQRT5: f64 = 2.236_067_977_499_79;

/// A fitted Gaussian process over standardized observations.
#[derive(Clone)]
pub struct Gp {
    points: Vec<Point>,
    /// The observations, as fitted.
    y: Vec<f64>,
    hyper: Hyper,
    /// Cholesky factor of the kernel matrix (row-major, lower).
    chol: Vec<f64>,
    /// `K^-1 y`.
    alpha: Vec<f64>,
    /// `K^-1 1`, for predictions under another constant prior mean.
    ones: Vec<f64>,
}

impl Gp {
    /// Fits a process to `y` (standardized: mean 0, spread about 1) observed at `points`.
    pub fn fit(points: Vec<Point>, y: &[f64]) -> Gp {
        let dims = points.first().map_or(0, |p| p.x.len() + p.c.len());
        let starts = [
            Hyper {
                length: vec![LENGTH_PRIOR.0; dims],
                signal: 0.0,
                noise: -4.6,
            },
            Hyper {
                length: vec![0.7; dims],
                signal: 0.0,
                noise: -9.2,
            },
        ];
        let mut best: Option<(f64, Hyper)> = None;
        for start in starts {
            let (score, hyper) = optimise(&points, y, start);
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, hyper));
            }
        }
        let (_, hyper) = best.expect("two starts");
        Gp::with_hyper(points, y.to_vec(), hyper)
    }

    /// The process with hyperparameters `hyper` conditioned on `y` at `points`.
    fn with_hyper(points: Vec<Point>, y: Vec<f64>, hyper: Hyper) -> Gp {
        let (hyper, (chol, alpha)) = match factor(&points, &y, &hyper) {
            Some(factored) => (hyper, factored),
            None => {
                // The fit only visits hyperparameters that factor; this is a last resort.
                let safe = Hyper {
                    length: hyper.length.clone(),
                    signal: 0.0,
                    noise: -2.3,
                };
                let factored =
                    factor(&points, &y, &safe).expect("a noisy kernel matrix is positive definite");
                (safe, factored)
            }
        };
        let n = points.len();
        let ones = backward(&chol, n, &forward(&chol, n, &vec![1.0; n]));
        Gp {
            points,
            y,
            hyper,
            chol,
            alpha,
            ones,
        }
    }

    /// The process with the same hyperparameters that has also seen `extra` points, each at its
    /// own prediction (a "kriging believer"): the mean stays what it was, the uncertainty at and
    /// around them shrinks to the noise. For assignments still running: what they will give is
    /// not known, but they will no longer be news.
    pub fn believing(&self, extra: &[Point]) -> Gp {
        if extra.is_empty() {
            return self.clone();
        }
        let mut points = self.points.clone();
        let mut y = self.y.clone();
        for p in extra {
            points.push(p.clone());
            y.push(self.predict(p).0);
        }
        Gp::with_hyper(points, y, self.hyper.clone())
    }

    /// Posterior mean and standard deviation of the (noise-free) function at `p`.
    pub fn predict(&self, p: &Point) -> (f64, f64) {
        let n = self.points.len();
        let signal = self.hyper.signal.exp();
        let scales = self.scales();
        let k: Vec<f64> = self
            .points
            .iter()
            .map(|q| signal * matern(distance2(p, q, &scales).sqrt()))
            .collect();
        let mean: f64 = k.iter().zip(&self.alpha).map(|(a, b)| a * b).sum();
        let v = forward(&self.chol, n, &k);
        let var = signal - v.iter().map(|x| x * x).sum::<f64>();
        (mean, var.max(1e-12).sqrt())
    }

    /// Posterior mean and standard deviation at `p` under a constant prior mean of `prior`
    /// rather than 0 (the observations' scale): what the process expects of a point it knows
    /// little about, were the unknown as good as `prior`.
    pub fn predict_with_prior(&self, p: &Point, prior: f64) -> (f64, f64) {
        let (mean, sd) = self.predict(p);
        let signal = self.hyper.signal.exp();
        let scales = self.scales();
        let k_ones: f64 = self
            .points
            .iter()
            .zip(&self.ones)
            .map(|(q, o)| signal * matern(distance2(p, q, &scales).sqrt()) * o)
            .sum();
        (mean + prior * (1.0 - k_ones), sd)
    }

    /// Distance between two points in the fitted length scales (a different choice adds its
    /// own scaled distance).
    pub fn scaled_distance(&self, a: &Point, b: &Point) -> f64 {
        distance2(a, b, &self.scales()).sqrt()
    }

    /// The fitted noise standard deviation (standardized units).
    pub fn noise(&self) -> f64 {
        (0.5 * self.hyper.noise).exp()
    }

    fn scales(&self) -> Vec<f64> {
        self.hyper.length.iter().map(|l| (-2.0 * l).exp()).collect()
    }
}

/// The logarithm of the expected improvement of a value predicted as `mean ± sd` below `best`
/// (lower is better); finite even where the improvement underflows.
pub fn log_expected_improvement(mean: f64, sd: f64, best: f64) -> f64 {
    let z = (best - mean) / sd;
    sd.ln() + log_h(z)
}

/// `ln(φ(z) + z Φ(z))`, with the asymptotic series far in the lower tail, where the direct form
/// cancels to nothing.
fn log_h(z: f64) -> f64 {
    if z > -20.0 {
        let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let cdf = 0.5 * erfc(-z / std::f64::consts::SQRT_2);
        (pdf + z * cdf).max(1e-300).ln()
    } else {
        let z2 = z * z;
        -0.5 * z2 - 0.5 * (2.0 * std::f64::consts::PI).ln() - 2.0 * (-z).ln()
            + (1.0 - 3.0 / z2 + 15.0 / (z2 * z2)).ln()
    }
}

/// The complementary error function (Chebyshev fit, relative error below 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Matérn 5/2 correlation at scaled distance `r`.
pub fn matern(r: f64) -> f64 {
    (1.0 + SQRT5 * r + 5.0 / 3.0 * r * r) * (-SQRT5 * r).exp()
}

/// Squared scaled distance; `scales` are `1 / length^2` per dimension.
fn distance2(a: &Point, b: &Point, scales: &[f64]) -> f64 {
    let mut d = 0.0;
    for (i, (x, y)) in a.x.iter().zip(&b.x).enumerate() {
        d += (x - y) * (x - y) * scales[i];
    }
    let offset = a.x.len();
    for (j, (x, y)) in a.c.iter().zip(&b.c).enumerate() {
        if x != y {
            d += scales[offset + j];
        }
    }
    d
}

/// Kernel matrix with noise on the diagonal.
fn kernel_matrix(points: &[Point], hyper: &Hyper) -> Vec<f64> {
    let n = points.len();
    let signal = hyper.signal.exp();
    let noise = hyper.noise.exp() + 1e-8;
    let scales: Vec<f64> = hyper.length.iter().map(|l| (-2.0 * l).exp()).collect();
    let mut k = vec![0.0; n * n];
    for i in 0..n {
        k[i * n + i] = signal + noise;
        for j in 0..i {
            let v = signal * matern(distance2(&points[i], &points[j], &scales).sqrt());
            k[i * n + j] = v;
            k[j * n + i] = v;
        }
    }
    k
}

/// Cholesky factor and `K^-1 y`; `None` when the matrix is not positive definite.
fn factor(points: &[Point], y: &[f64], hyper: &Hyper) -> Option<(Vec<f64>, Vec<f64>)> {
    let n = points.len();
    let chol = cholesky(kernel_matrix(points, hyper), n)?;
    let z = forward(&chol, n, y);
    let alpha = backward(&chol, n, &z);
    Some((chol, alpha))
}

/// Lower Cholesky factor of a symmetric matrix, in place.
fn cholesky(mut a: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
        for i in 0..j {
            a[i * n + j] = 0.0;
        }
    }
    Some(a)
}

/// Solves `L z = b`.
fn forward(l: &[f64], n: usize, b: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; n];
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= l[i * n + k] * z[k];
        }
        z[i] = s / l[i * n + i];
    }
    z
}

/// Solves `L^T x = z`.
fn backward(l: &[f64], n: usize, z: &[f64]) -> Vec<f64> {
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let mut s = z[i];
        for k in i + 1..n {
            s -= l[k * n + i] * x[k];
        }
        x[i] = s / l[i * n + i];
    }
    x
}

/// Log marginal likelihood plus log priors, and its gradient in the order
/// (lengths..., signal, noise); `None` when the kernel matrix does not factor.
fn objective(points: &[Point], y: &[f64], hyper: &Hyper) -> Option<(f64, Vec<f64>)> {
    let n = points.len();
    let dims = hyper.length.len();
    let (chol, alpha) = factor(points, y, hyper)?;
    let fit: f64 = y.iter().zip(&alpha).map(|(a, b)| a * b).sum();
    let log_det: f64 = (0..n).map(|i| chol[i * n + i].ln()).sum();
    let mut value = -0.5 * fit - log_det;

    // W = alpha alpha^T - K^-1, from the inverse of the Cholesky factor.
    let mut inverse = vec![0.0; n * n];
    for col in 0..n {
        let mut e = vec![0.0; n];
        e[col] = 1.0;
        let z = forward(&chol, n, &e);
        let x = backward(&chol, n, &z);
        for row in 0..n {
            inverse[row * n + col] = x[row];
        }
    }
    let signal = hyper.signal.exp();
    let noise = hyper.noise.exp();
    let scales: Vec<f64> = hyper.length.iter().map(|l| (-2.0 * l).exp()).collect();
    let mut gradient = vec![0.0; dims + 2];
    for i in 0..n {
        let w_ii = alpha[i] * alpha[i] - inverse[i * n + i];
        gradient[dims] += 0.5 * w_ii * signal;
        gradient[dims + 1] += 0.5 * w_ii * noise;
        for j in 0..i {
            // Off-diagonal terms count twice (W and K are symmetric).
            let w = alpha[i] * alpha[j] - inverse[i * n + j];
            let r = distance2(&points[i], &points[j], &scales).sqrt();
            let e = (-SQRT5 * r).exp();
            gradient[dims] += w * signal * (1.0 + SQRT5 * r + 5.0 / 3.0 * r * r) * e;
            let common = w * signal * 5.0 / 3.0 * (1.0 + SQRT5 * r) * e;
            let (a, b) = (&points[i], &points[j]);
            for (d, (x, z)) in a.x.iter().zip(&b.x).enumerate() {
                gradient[d] += common * (x - z) * (x - z) * scales[d];
            }
            let offset = a.x.len();
            for (d, (x, z)) in a.c.iter().zip(&b.c).enumerate() {
                if x != z {
                    gradient[offset + d] += common * scales[offset + d];
                }
            }
        }
    }
    // Gaussian priors on the logs keep a handful of points from fitting wild length scales.
    let mut prior = |value: &mut f64, at: usize, x: f64, (centre, width): (f64, f64)| {
        *value -= 0.5 * ((x - centre) / width).powi(2);
        gradient[at] -= (x - centre) / (width * width);
    };
    for (d, l) in hyper.length.iter().enumerate() {
        prior(&mut value, d, *l, LENGTH_PRIOR);
    }
    prior(&mut value, dims, hyper.signal, SIGNAL_PRIOR);
    prior(&mut value, dims + 1, hyper.noise, NOISE_PRIOR);
    Some((value, gradient))
}

/// Maximises `objective` from `start` with Rprop (step sizes that grow while the gradient keeps
/// its sign and halve when it flips): robust without a line search. Returns the best seen.
fn optimise(points: &[Point], y: &[f64], start: Hyper) -> (f64, Hyper) {
    let dims = start.length.len();
    let bounds = |i: usize| {
        if i < dims {
            LENGTH_BOUNDS
        } else if i == dims {
            SIGNAL_BOUNDS
        } else {
            NOISE_BOUNDS
        }
    };
    let mut theta: Vec<f64> = start
        .length
        .iter()
        .copied()
        .chain([start.signal, start.noise])
        .collect();
    let unpack = |theta: &[f64]| Hyper {
        length: theta[..dims].to_vec(),
        signal: theta[dims],
        noise: theta[dims + 1],
    };
    let mut steps = vec![0.1_f64; theta.len()];
    let mut previous = vec![0.0; theta.len()];
    let mut best = (f64::NEG_INFINITY, unpack(&theta));
    for _ in 0..FIT_STEPS {
        let Some((value, gradient)) = objective(points, y, &unpack(&theta)) else {
            // Back off towards more noise, which always factors.
            theta[dims + 1] = (theta[dims + 1] + 1.0).min(NOISE_BOUNDS.1);
            continue;
        };
        if value > best.0 {
            best = (value, unpack(&theta));
        }
        for i in 0..theta.len() {
            let g = gradient[i];
            if g * previous[i] > 0.0 {
                steps[i] = (steps[i] * 1.2).min(1.0);
            } else if g * previous[i] < 0.0 {
                steps[i] = (steps[i] * 0.5).max(1e-4);
            }
            previous[i] = if g * previous[i] < 0.0 { 0.0 } else { g };
            let (low, high) = bounds(i);
            theta[i] = (theta[i] + g.signum() * steps[i]).clamp(low, high);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64) -> Point {
        Point {
            x: vec![x],
            c: Vec::new(),
        }
    }

    #[test]
    fn interpolates_a_smooth_function_and_is_unsure_away_from_data() {
        let xs: Vec<f64> = (0..8).map(|i| i as f64 / 7.0).collect();
        let ys: Vec<f64> = xs.iter().map(|x| (6.0 * x).sin()).collect();
        let gp = Gp::fit(xs.iter().map(|&x| point(x)).collect(), &ys);
        let (mean, sd) = gp.predict(&point(0.5));
        assert!((mean - 3f64.sin()).abs() < 0.05, "{mean}");
        assert!(sd < 0.1, "{sd}");
        let (_, far) = gp.predict(&point(3.0));
        assert!(far > 0.5, "{far}");
    }

    #[test]
    fn the_gradient_matches_finite_differences() {
        let points = vec![
            Point {
                x: vec![0.1, 0.7],
                c: vec![0],
            },
            Point {
                x: vec![0.4, 0.2],
                c: vec![1],
            },
            Point {
                x: vec![0.9, 0.5],
                c: vec![0],
            },
            Point {
                x: vec![0.3, 0.3],
                c: vec![1],
            },
        ];
        let y = [0.5, -1.0, 1.2, -0.3];
        let hyper = Hyper {
            length: vec![-0.5, 0.2, 0.1],
            signal: 0.3,
            noise: -3.0,
        };
        let (_, gradient) = objective(&points, &y, &hyper).unwrap();
        let flat: Vec<f64> = [-0.5, 0.2, 0.1, 0.3, -3.0].to_vec();
        for i in 0..flat.len() {
            let at = |delta: f64| {
                let mut t = flat.clone();
                t[i] += delta;
                let h = Hyper {
                    length: t[..3].to_vec(),
                    signal: t[3],
                    noise: t[4],
                };
                objective(&points, &y, &h).unwrap().0
            };
            let numeric = (at(1e-5) - at(-1e-5)) / 2e-5;
            assert!(
                (numeric - gradient[i]).abs() < 1e-4 * (1.0 + numeric.abs()),
                "parameter {i}: {numeric} vs {}",
                gradient[i]
            );
        }
    }

    #[test]
    fn believing_its_prediction_keeps_the_mean_and_removes_the_doubt() {
        let xs = [0.0, 0.2, 0.9, 1.0];
        let gp = Gp::fit(
            xs.iter().map(|&x| point(x)).collect(),
            &xs.map(|x| (4.0 * x).cos()),
        );
        let believing = gp.believing(&[point(0.55)]);
        for x in [0.3, 0.5, 0.55, 0.6, 0.8] {
            let (before, _) = gp.predict(&point(x));
            let (after, _) = believing.predict(&point(x));
            assert!(
                (before - after).abs() < 1e-6,
                "mean at {x}: {before} then {after}"
            );
        }
        let (_, doubt) = gp.predict(&point(0.55));
        let (_, left) = believing.predict(&point(0.55));
        assert!(
            left < 0.3 * doubt,
            "sd at the believed point: {doubt} then {left}"
        );
        let (_, far) = believing.predict(&point(0.1));
        let (_, far_before) = gp.predict(&point(0.1));
        assert!(
            far > 0.5 * far_before,
            "sd far from it: {far_before} then {far}"
        );
    }

    #[test]
    fn expected_improvement_is_finite_far_in_the_tail() {
        assert!(log_expected_improvement(0.0, 1.0, 0.0) > log_expected_improvement(1.0, 1.0, 0.0));
        let deep = log_expected_improvement(40.0, 1.0, 0.0);
        assert!(deep.is_finite() && deep < -700.0, "{deep}");
        // The direct and the asymptotic forms meet where one hands over to the other.
        let direct = log_h(-20.0 + 1e-9);
        let asymptotic = log_h(-20.0 - 1e-9);
        assert!((direct - asymptotic).abs() < 1e-3, "{direct} {asymptotic}");
        assert!((erfc(0.5) - 0.479_500_122).abs() < 1e-7);
    }
}
