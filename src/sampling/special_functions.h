// Special functions the schedulers need in double precision, without scipy.
#pragma once

namespace sdflow::sampling {

// Regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1].
double incomplete_beta(double x, double a, double b);

// Its inverse in x: the quantile of the Beta(a, b) distribution (scipy.stats.beta.ppf).
// Accurate to a few ulps for the shapes the beta scheduler uses (a, b around 0.1..10).
double beta_ppf(double q, double a, double b);

}  // namespace sdflow::sampling
