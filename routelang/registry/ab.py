"""The statistics of A/B reports (docs/registry.md, "A/B reports"): pure
functions over lists of numbers, standard library only.

- `percentile`: linear interpolation between order statistics (Hyndman & Fan
  type 7, numpy's default `method="linear"`);
- `two_proportion_z_test`: the pooled two-proportion z-test, with Newcombe's
  hybrid score interval (Newcombe 1998, method 10) for the difference;
- `welch_t_test`: Welch's t-test with the Welch–Satterthwaite degrees of
  freedom and the t interval for the difference of means;
- `student_t_two_sided_p` / `student_t_quantile`: the t distribution, from the
  regularised incomplete beta function;
- `always_valid`: the early-stopping guard, the mixture sequential probability
  ratio test (mSPRT) of Johari, Koomen, Pekelis & Walsh, "Peeking at A/B
  tests" (KDD 2017) / "Always valid inference" (Operations Research 2022),
  with a normal mixture over the effect: an always-valid p-value (its running
  minimum over every prefix of the data in time order) and an always-valid
  confidence interval.

Every difference is `variant - control`. A test that cannot be computed
(too few values, no variance) returns None and says why; no NaN is returned.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


class NotTestable(ValueError):
    """The data cannot give this statistic; the message says why, in plain words."""


# ---- descriptive ------------------------------------------------------------------------

def mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def sample_variance(values: Sequence[float]) -> float:
    """The unbiased variance (n - 1 in the denominator), two-pass for accuracy;
    exactly 0 for equal values (their mean may round off them)."""
    if min(values) == max(values):
        return 0.0
    m = mean(values)
    return math.fsum((v - m) ** 2 for v in values) / (len(values) - 1)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between the closest
    order statistics: position (n - 1) * q / 100 of the sorted values (Hyndman &
    Fan 1996 type 7; numpy.percentile's default). None for no values."""
    return percentiles(values, [q])[0]


def percentiles(values: Iterable[float], qs: Sequence[float]) -> list[float | None]:
    """`percentile` for each of qs, sorting once."""
    ordered = sorted(values)
    if not ordered:
        return [None] * len(qs)
    out = []
    for q in qs:
        position = (len(ordered) - 1) * q / 100
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        out.append(ordered[low] + (position - low) * (ordered[high] - ordered[low]))
    return out


# ---- the t distribution -------------------------------------------------------------------

_CF_EPSILON = 1e-15
_CF_TINY = 1e-300
_CF_MAX_ITERATIONS = 100_000  # convergence takes O(sqrt(max(a, b))) terms


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    """The continued fraction of I_x(a, b) (DLMF 8.17.22), evaluated by the
    modified Lentz method (Numerical Recipes, 3rd ed., §5.2 and §6.4 `betacf`)."""
    qab, qap, qam = a + b, a + 1, a - 1
    c = 1.0
    d = 1 - qab * x / qap
    d = 1 / (d if abs(d) > _CF_TINY else _CF_TINY)
    h = d
    for m in range(1, _CF_MAX_ITERATIONS):
        m2 = 2 * m
        # The even step d_{2m} and the odd step d_{2m+1} of the fraction.
        for numerator in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                          -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > _CF_TINY else _CF_TINY)
            c = 1 + numerator / c
            c = c if abs(c) > _CF_TINY else _CF_TINY
            step = c * d
            h *= step
        if abs(step - 1) < _CF_EPSILON:
            return h
    raise ArithmeticError(f"the incomplete beta fraction did not converge (x={x}, a={a}, b={b})")


def _stirling_correction(z: float) -> float:
    """log Γ(z) - [(z - 1/2) log z - z + log(2π)/2], its asymptotic series
    (Abramowitz & Stegun 6.1.41); the truncation error is below 1e-20 for z >= 100."""
    inverse, inverse2 = 1 / z, 1 / (z * z)
    return inverse * (1 / 12 - inverse2 * (1 / 360 - inverse2 * (1 / 1260 - inverse2 / 1680)))


def log_beta(a: float, b: float) -> float:
    """log B(a, b). For a large parameter, lgamma(a + b) - lgamma(a) would cancel
    most of its digits (df of 10^6 loses 9), so that ratio comes from Stirling's series."""
    small, big = min(a, b), max(a, b)
    if big < 100:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    log_ratio = ((big - 0.5) * math.log1p(small / big) + small * math.log(big + small) - small
                 + _stirling_correction(big + small) - _stirling_correction(big))  # log Γ(big+small)/Γ(big)
    return math.lgamma(small) - log_ratio


def regularized_incomplete_beta(x: float, a: float, b: float, x_complement: float | None = None) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0 and 0 <= x <= 1; pass
    `x_complement` (1 - x) when it is known more exactly than 1 - x rounds.

    The fraction converges fast for x < (a + 1) / (a + b + 2); beyond, the
    symmetry I_x(a, b) = 1 - I_{1-x}(b, a) is used (Numerical Recipes §6.4)."""
    y = 1 - x if x_complement is None else x_complement
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    # log of x^a (1-x)^b / B(a, b), shared by both branches; log1p of the smaller
    # of x and 1 - x keeps the digits that a large a or b multiplies
    log_x = math.log1p(-y) if y < 0.5 else math.log(x)
    log_y = math.log1p(-x) if x < 0.5 else math.log(y)
    log_front = a * log_x + b * log_y - log_beta(a, b)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_continued_fraction(y, b, a) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for T ~ Student's t with df degrees of freedom:
    I_{df / (df + t^2)}(df / 2, 1 / 2) (Abramowitz & Stegun 26.7.1, 26.5.27)."""
    if math.isinf(t):
        return 0.0
    t2 = t * t
    return regularized_incomplete_beta(df / (df + t2), df / 2, 0.5, x_complement=t2 / (df + t2))


def student_t_quantile(probability: float, df: float) -> float:
    """The t with P(T <= t) = probability (0.5 <= probability < 1), by bisection
    on the two-sided tail (monotone in |t|) to double precision."""
    tail = 2 * (1 - probability)
    low, high = 0.0, 1.0
    while student_t_two_sided_p(high, df) > tail:
        low, high = high, high * 2
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if student_t_two_sided_p(middle, df) > tail:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def normal_two_sided_p(z: float) -> float:
    return 2 * _NORMAL.cdf(-abs(z))


def normal_quantile(probability: float) -> float:
    return _NORMAL.inv_cdf(probability)


# ---- fixed-horizon tests --------------------------------------------------------------------

@dataclass(frozen=True)
class FixedHorizonResult:
    difference: float                      # variant - control
    statistic: float                       # z or t
    p_value: float                         # two-sided
    ci: tuple[float, float]                # for the difference, at the level asked
    df: float | None = None                # Welch's degrees of freedom (t-test only)


def wilson_interval(successes: int, n: int, alpha: float) -> tuple[float, float]:
    """The Wilson score interval for a proportion (Wilson 1927)."""
    z = normal_quantile(1 - alpha / 2)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_z_test(control_successes: int, control_n: int, variant_successes: int, variant_n: int,
                          alpha: float = 0.05) -> FixedHorizonResult:
    """H0: equal success rates. z uses the pooled rate (as statsmodels'
    `proportions_ztest`); the interval for the difference is Newcombe's hybrid
    score interval (defined at rates of 0 and 1, where the Wald interval is not)."""
    if control_n < 1 or variant_n < 1:
        raise NotTestable("an arm has no requests")
    p_control, p_variant = control_successes / control_n, variant_successes / variant_n
    pooled = (control_successes + variant_successes) / (control_n + variant_n)
    if pooled in (0.0, 1.0):
        state = "succeeded" if pooled == 1.0 else "failed"
        raise NotTestable(f"every request of both arms {state}: the rates do not vary yet")
    se = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / variant_n))
    difference = p_variant - p_control
    z = difference / se
    low_v, high_v = wilson_interval(variant_successes, variant_n, alpha)
    low_c, high_c = wilson_interval(control_successes, control_n, alpha)
    ci = (difference - math.sqrt((p_variant - low_v) ** 2 + (high_c - p_control) ** 2),
          difference + math.sqrt((high_v - p_variant) ** 2 + (p_control - low_c) ** 2))
    return FixedHorizonResult(difference, z, normal_two_sided_p(z), ci)


def welch_t_test(control: Sequence[float], variant: Sequence[float], alpha: float = 0.05) -> FixedHorizonResult:
    """H0: equal means, variances not assumed equal (Welch 1947): t = (mean_v -
    mean_c) / sqrt(s_v^2/n_v + s_c^2/n_c), df by Welch–Satterthwaite, and the
    interval difference ± t_{1-alpha/2, df} * se (as scipy's `ttest_ind(equal_var=False)`)."""
    if len(control) < 2 or len(variant) < 2:
        raise NotTestable("each arm needs at least 2 values")
    var_c, var_v = sample_variance(control) / len(control), sample_variance(variant) / len(variant)
    se2 = var_c + var_v
    if se2 == 0:
        raise NotTestable("no variance: every value of both arms is the same")
    difference = mean(variant) - mean(control)
    se = math.sqrt(se2)
    t = difference / se
    df = se2 ** 2 / (var_c ** 2 / (len(control) - 1) + var_v ** 2 / (len(variant) - 1))
    half = student_t_quantile(1 - alpha / 2, df) * se
    return FixedHorizonResult(difference, t, student_t_two_sided_p(t, df), (difference - half, difference + half), df)


# ---- the early-stopping guard: mSPRT ---------------------------------------------------------

# The normal mixture's spread tau, in standard deviations of one observation: the
# test is most sensitive to effects of about this size (a tenth of a standard deviation).
MIXTURE_EFFECT_SD = 0.1


def msprt_log_likelihood_ratio(difference: float, variance: float, tau2: float) -> float:
    """log Λ for H0: effect 0, where the estimate `difference` ~ N(effect, variance)
    and the effect is mixed over N(0, tau2) (Johari et al. 2017, eq. 11 in the
    general form): Λ = sqrt(V / (V + τ²)) exp(τ² d² / (2 V (V + τ²)))."""
    return 0.5 * math.log(variance / (variance + tau2)) + tau2 * difference ** 2 / (
        2 * variance * (variance + tau2))


def msprt_interval(difference: float, variance: float, tau2: float, alpha: float) -> tuple[float, float]:
    """The effects θ not rejected at this look, {θ : Λ(θ) < 1/alpha}: the
    always-valid confidence interval."""
    half = math.sqrt(2 * variance * (variance + tau2) / tau2
                     * (math.log(1 / alpha) + 0.5 * math.log((variance + tau2) / variance)))
    return difference - half, difference + half


@dataclass(frozen=True)
class AlwaysValid:
    p_value: float                  # the running minimum of 1/Λ over every look
    ci: tuple[float, float]         # at the last look
    looks: int                      # how many prefixes could be evaluated


class _Running:
    """Count, mean and sum of squared deviations, updated one value at a time (Welford)."""

    __slots__ = ("m2", "mean", "n")

    def __init__(self):
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    def variance(self) -> float:
        return self.m2 / (self.n - 1)


def always_valid(events: Iterable[tuple[bool, float]], alpha: float = 0.05, min_per_arm: int = 2,
                 effect_sd: float = MIXTURE_EFFECT_SD, binary: bool = False) -> AlwaysValid:
    """The mSPRT over `events`, (is_variant, value) in time order, one look after
    each event once both arms have `min_per_arm` values.

    At a look, d = mean_v - mean_c, V = s_v²/n_v + s_c²/n_c (the per-arm sample
    variances plugged in, as Johari et al. do for unknown variances), and
    τ² = effect_sd² (s_v² + s_c²) / 2 (so the test does not depend on units).
    The p-value min over looks of min(1, 1/Λ) is valid whenever one stops, so
    looking after every request does not inflate false positives.

    `binary`: the values are 0/1 outcomes. When neither arm varies yet their
    rates differ (every control request succeeded, every variant request
    failed), the plug-in variances are 0 and would carry no evidence; such a
    look uses the pooled rate's variance p(1 - p) for both arms instead, as
    the pooled z-test does. Any other look is unchanged."""
    arms = {False: _Running(), True: _Running()}
    best_log_lr = 0.0            # log Λ of the best look so far (p = exp(-best) <= 1)
    last = None
    looks = 0
    for is_variant, value in events:
        arms[is_variant].add(value)
        control, variant = arms[False], arms[True]
        if min(control.n, variant.n) < max(2, min_per_arm):
            continue
        var_c, var_v = control.variance(), variant.variance()
        variance = var_c / control.n + var_v / variant.n
        if variance <= 0 and binary and control.mean != variant.mean:
            pooled = (control.mean * control.n + variant.mean * variant.n) / (control.n + variant.n)
            var_c = var_v = pooled * (1 - pooled)
            variance = var_c / control.n + var_v / variant.n
        if variance <= 0:
            continue  # no spread yet: this look carries no evidence either way
        tau2 = effect_sd ** 2 * (var_c + var_v) / 2
        difference = variant.mean - control.mean
        best_log_lr = max(best_log_lr, msprt_log_likelihood_ratio(difference, variance, tau2))
        last = (difference, variance, tau2)
        looks += 1
    if last is None:
        raise NotTestable(f"no look had at least {max(2, min_per_arm)} values with some variance in each arm")
    return AlwaysValid(math.exp(-best_log_lr), msprt_interval(*last, alpha), looks)
