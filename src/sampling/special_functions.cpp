#include "sampling/special_functions.h"

#include <cmath>
#include <limits>

namespace sdflow::sampling {
namespace {

// Continued fraction for I_x(a, b) (modified Lentz), valid where x < (a + 1) / (a + b + 2).
// Evaluated in long double so the double result is correctly rounded in practice.
long double beta_continued_fraction(long double x, long double a, long double b) {
  constexpr long double kTiny = 1e-300L;
  constexpr long double kEps = std::numeric_limits<long double>::epsilon();
  const long double qab = a + b;
  const long double qap = a + 1.0L;
  const long double qam = a - 1.0L;
  long double c = 1.0L;
  long double d = 1.0L - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1.0L / d;
  long double h = d;
  for (int m = 1; m <= 10000; ++m) {
    const long double m2 = 2.0L * m;
    long double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1.0L + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0L + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0L / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1.0L + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1.0L + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1.0L / d;
    const long double del = d * c;
    h *= del;
    if (std::fabs(del - 1.0L) < kEps) break;
  }
  return h;
}

long double incomplete_beta_ld(long double x, long double a, long double b) {
  if (x <= 0.0L) return 0.0L;
  if (x >= 1.0L) return 1.0L;
  const long double log_front =
      std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
  const long double front = std::exp(log_front);
  if (x < (a + 1.0L) / (a + b + 2.0L)) return front * beta_continued_fraction(x, a, b) / a;
  return 1.0L - front * beta_continued_fraction(1.0L - x, b, a) / b;
}

}  // namespace

double incomplete_beta(double x, double a, double b) {
  return static_cast<double>(incomplete_beta_ld(x, a, b));
}

double beta_ppf(double q, double a, double b) {
  if (std::isnan(q) || q < 0.0 || q > 1.0 || !(a > 0.0) || !(b > 0.0)) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  if (q == 0.0) return 0.0;
  if (q == 1.0) return 1.0;
  // Bisection keeps a bracket; Newton steps inside it converge quadratically. The pdf can be
  // infinite at the ends (a or b < 1), so every Newton step is checked against the bracket.
  const long double target = q;
  const long double log_beta = std::lgamma(static_cast<long double>(a)) +
                               std::lgamma(static_cast<long double>(b)) -
                               std::lgamma(static_cast<long double>(a) + b);
  long double lo = 0.0L;
  long double hi = 1.0L;
  long double x = 0.5L;
  for (int iter = 0; iter < 400; ++iter) {
    const long double f = incomplete_beta_ld(x, a, b) - target;
    if (f == 0.0L) break;
    if (f < 0.0L) {
      lo = x;
    } else {
      hi = x;
    }
    const long double log_pdf = (a - 1.0L) * std::log(x) + (b - 1.0L) * std::log1p(-x) - log_beta;
    const long double pdf = std::exp(log_pdf);
    long double next = x - f / pdf;
    if (!(next > lo && next < hi) || !std::isfinite(static_cast<double>(next))) next = 0.5L * (lo + hi);
    if (static_cast<double>(next) == static_cast<double>(x) && iter > 4) {
      x = next;
      break;
    }
    x = next;
    if (static_cast<double>(hi) - static_cast<double>(lo) <= 0.0) break;
  }
  return static_cast<double>(x);
}

}  // namespace sdflow::sampling
