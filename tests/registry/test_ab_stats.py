"""The A/B statistics (routelang/registry/ab.py) against scipy and statsmodels on the same data."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from routelang.registry import ab

REL = 1e-9
# scipy warns when a sample's values are nearly identical; the comparison is still exact enough.
NEAR_IDENTICAL = pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")


def close(ours: float, reference: float, rel: float = REL, abs_: float = 1e-12) -> bool:
    return math.isclose(ours, float(reference), rel_tol=rel, abs_tol=abs_)


# ---- the t distribution and the incomplete beta ------------------------------------------------

@pytest.mark.parametrize("a", [0.5, 1, 2.5, 10, 99, 150, 1e4, 5e5])
@pytest.mark.parametrize("b", [0.5, 1, 3, 40, 1e3])
def test_incomplete_beta_matches_scipy(a, b):
    for x in (1e-6, 0.01, 0.2, 0.5, 0.77, 0.99, 1 - 1e-6):
        assert close(ab.regularized_incomplete_beta(x, a, b), scipy.special.betainc(a, b, x), rel=1e-9,
                     abs_=1e-14), (x, a, b)
    # scipy's betaln loses digits for a large parameter (~3e-11 at 5e5); ours uses Stirling's series there
    assert close(ab.log_beta(a, b), scipy.special.betaln(a, b), rel=1e-10)


@pytest.mark.parametrize("df", [1, 1.5, 2, 3.7, 10, 30, 100, 1e3, 1e4, 1e6])
def test_t_two_sided_p_and_quantile_match_scipy(df):
    for t in (0.0, 1e-3, 0.1, 0.7, 1, 1.96, 2.5, 4, 10, 30):
        assert close(ab.student_t_two_sided_p(t, df), 2 * scipy.stats.t.sf(t, df), rel=1e-9, abs_=1e-300), t
        assert ab.student_t_two_sided_p(-t, df) == ab.student_t_two_sided_p(t, df)
    for probability in (0.5, 0.6, 0.9, 0.975, 0.995, 0.9999):
        assert close(ab.student_t_quantile(probability, df), scipy.stats.t.ppf(probability, df), rel=1e-9)


def test_t_p_value_underflows_to_zero_not_nan():
    assert ab.student_t_two_sided_p(1e6, 5) == pytest.approx(2 * scipy.stats.t.sf(1e6, 5), rel=1e-6)
    assert ab.student_t_two_sided_p(math.inf, 5) == 0.0


# ---- percentiles: numpy's "linear" method (Hyndman & Fan type 7) --------------------------------

@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=200),
       st.floats(0, 100))
def test_percentile_is_numpys_linear_method(values, q):
    assert close(ab.percentile(values, q), np.percentile(values, q, method="linear"), rel=1e-12, abs_=1e-6)


def test_percentile_of_nothing_is_none_and_of_one_value_is_that_value():
    assert ab.percentile([], 50) is None
    assert ab.percentile([7.5], 99) == 7.5


# ---- Welch's t-test -----------------------------------------------------------------------------

def _welch_reference(control, variant, alpha=0.05):
    result = scipy.stats.ttest_ind(variant, control, equal_var=False)
    ci = result.confidence_interval(1 - alpha)
    return result.statistic, result.df, result.pvalue, (ci.low, ci.high)


def _assert_welch(control, variant, alpha=0.05):
    ours = ab.welch_t_test(control, variant, alpha)
    statistic, df, p, (low, high) = _welch_reference(control, variant, alpha)
    assert close(ours.statistic, statistic, rel=1e-9)
    assert close(ours.df, df, rel=1e-9)
    assert close(ours.p_value, p, rel=1e-8, abs_=1e-15)
    assert close(ours.ci[0], low, rel=1e-8, abs_=1e-9) and close(ours.ci[1], high, rel=1e-8, abs_=1e-9)
    assert close(ours.difference, np.mean(variant) - np.mean(control), rel=1e-12, abs_=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_welch_matches_scipy_on_latency_like_samples(seed):
    rng = np.random.default_rng(seed)
    control = rng.lognormal(5, 0.5, 40 + 100 * seed).tolist()
    variant = rng.lognormal(5.1, 0.9, 25 + 300 * seed).tolist()
    _assert_welch(control, variant)
    _assert_welch(control, variant, alpha=0.01)


_sample = st.lists(st.integers(0, 100_000).map(lambda v: v / 10), min_size=2, max_size=60)


@NEAR_IDENTICAL
@settings(max_examples=200, deadline=None)
@given(_sample, _sample, st.sampled_from([0.01, 0.05, 0.1]))
def test_welch_matches_scipy_on_generated_samples(control, variant, alpha):
    if len(set(control)) == 1 and len(set(variant)) == 1:
        with pytest.raises(ab.NotTestable, match="no variance"):
            ab.welch_t_test(control, variant, alpha)
        return
    _assert_welch(control, variant, alpha)


@NEAR_IDENTICAL
def test_welch_with_one_arm_constant_matches_scipy():
    _assert_welch([5.0] * 10, [4.0, 6.0, 5.5, 7.0])


def test_welch_needs_two_values_per_arm():
    with pytest.raises(ab.NotTestable, match="at least 2"):
        ab.welch_t_test([1.0], [1.0, 2.0])


# ---- the two-proportion z-test ------------------------------------------------------------------

def _assert_proportions(s_c, n_c, s_v, n_v, alpha=0.05):
    ours = ab.two_proportion_z_test(s_c, n_c, s_v, n_v, alpha)
    z, p = proportions_ztest([s_v, s_c], [n_v, n_c])        # pooled variance under H0 (prop_var=False)
    assert close(ours.statistic, z, rel=1e-9) and close(ours.p_value, p, rel=1e-8, abs_=1e-15)
    low, high = confint_proportions_2indep(s_v, n_v, s_c, n_c, method="newcomb", compare="diff", alpha=alpha)
    assert close(ours.ci[0], low, rel=1e-9, abs_=1e-12) and close(ours.ci[1], high, rel=1e-9, abs_=1e-12)
    assert close(ours.difference, s_v / n_v - s_c / n_c, rel=1e-12)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.floats(0, 1), st.floats(0, 1),
       st.sampled_from([0.01, 0.05, 0.1]))
def test_z_test_and_newcombe_interval_match_statsmodels(n_c, n_v, share_c, share_v, alpha):
    s_c, s_v = round(n_c * share_c), round(n_v * share_v)
    if s_c + s_v in (0, n_c + n_v):
        with pytest.raises(ab.NotTestable, match="every request of both arms"):
            ab.two_proportion_z_test(s_c, n_c, s_v, n_v, alpha)
        return
    _assert_proportions(s_c, n_c, s_v, n_v, alpha)


def test_z_test_where_one_arm_is_all_successes():
    _assert_proportions(200, 200, 180, 200)   # the Wald interval would collapse on the control's side


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (10, 10), (3, 7), (950, 1000)])
def test_wilson_interval_matches_statsmodels(successes, n):
    low, high = proportion_confint(successes, n, alpha=0.05, method="wilson")
    ours = ab.wilson_interval(successes, n, 0.05)
    assert close(ours[0], low, abs_=1e-12) and close(ours[1], high, abs_=1e-12)


# ---- the mSPRT (no reference library implements it: its formula, and its promise) ---------------

@pytest.mark.parametrize(("difference", "variance", "tau2"), [(0.3, 0.01, 0.04), (-2.0, 1.5, 0.2), (0.0, 0.5, 3.0),
                                                               (0.05, 1e-4, 1e-3)])
def test_msprt_likelihood_ratio_is_the_normal_mixture_integral(difference, variance, tau2):
    """Λ = ∫ N(d; θ, V) / N(d; 0, V) · N(θ; 0, τ²) dθ, integrated numerically by scipy."""
    def integrand(theta):
        return (scipy.stats.norm.pdf(difference, theta, math.sqrt(variance))
                / scipy.stats.norm.pdf(difference, 0, math.sqrt(variance))
                * scipy.stats.norm.pdf(theta, 0, math.sqrt(tau2)))

    spread = 12 * math.sqrt(tau2)
    reference, _ = scipy.integrate.quad(integrand, -spread, spread, points=[difference], limit=200)
    assert math.exp(ab.msprt_log_likelihood_ratio(difference, variance, tau2)) == pytest.approx(reference, rel=1e-7)


def test_msprt_interval_ends_where_the_likelihood_ratio_reaches_one_over_alpha():
    difference, variance, tau2, alpha = 1.2, 0.3, 0.5, 0.05
    low, high = ab.msprt_interval(difference, variance, tau2, alpha)
    for end in (low, high):   # testing H0: effect = end gives Λ = 1/alpha exactly
        assert ab.msprt_log_likelihood_ratio(difference - end, variance, tau2) == pytest.approx(math.log(1 / alpha))
    fixed = scipy.stats.norm.ppf(0.975) * math.sqrt(variance)
    assert high - difference > fixed   # wider than the fixed-horizon interval: the price of peeking


LATENCY_LIKE = ("latency-like", lambda rng: rng.lognormvariate(5, 0.6))
SUCCESS_LIKE = ("successes at 90%", lambda rng: float(rng.random() < 0.9))


def _aa_events(rng: random.Random, n: int, draw) -> list[tuple[bool, float]]:
    return [(i % 2 == 1, draw(rng)) for i in range(2 * n)]


def _naive_peeking_rejects(events, alpha):
    """Stop at the first look (after every event, from 30 per arm) whose z-test p <= alpha."""
    sums = {False: [0, 0.0, 0.0], True: [0, 0.0, 0.0]}
    for is_variant, value in events:
        s = sums[is_variant]
        s[0] += 1
        s[1] += value
        s[2] += value * value
        if min(sums[False][0], sums[True][0]) < 30:
            continue
        (n_c, sum_c, sq_c), (n_v, sum_v, sq_v) = sums[False], sums[True]
        var = (sq_c - sum_c ** 2 / n_c) / (n_c - 1) / n_c + (sq_v - sum_v ** 2 / n_v) / (n_v - 1) / n_v
        if var > 1e-12 and ab.normal_two_sided_p((sum_v / n_v - sum_c / n_c) / math.sqrt(var)) <= alpha:
            return True
    return False


@pytest.mark.parametrize(("kind", "draw"), [LATENCY_LIKE, SUCCESS_LIKE], ids=["latency", "success"])
def test_looking_after_every_request_keeps_false_positives_below_alpha(kind, draw):
    """A/A tests (no effect), looked at after every request from 30 per arm (as the
    report does): the always-valid p-value rejects at most about alpha of them, while
    stopping at the first fixed-horizon p <= alpha rejects several times as many
    (the failure the guard prevents)."""
    rng = random.Random(20261201)
    runs, alpha = 300, 0.05
    guarded = naive = 0
    for _ in range(runs):
        events = _aa_events(rng, 300, draw)
        guarded += ab.always_valid(events, alpha, min_per_arm=30, binary=kind == "success").p_value <= alpha
        naive += _naive_peeking_rejects(events, alpha)
    print(f"{kind}: always-valid rejected {guarded / runs:.3f}, naive peeking {naive / runs:.3f}")
    assert guarded / runs <= alpha + 0.02      # 0.07: ~2 standard errors of a 0.05 rate over 300 runs
    assert naive / runs >= 3 * alpha


def test_always_valid_detects_a_real_effect_and_its_p_value_only_decreases():
    rng = random.Random(7)
    events = [(i % 2 == 1, rng.gauss(100 + 10 * (i % 2), 15)) for i in range(1000)]
    result = ab.always_valid(events, 0.05)
    assert result.p_value < 1e-4 and result.ci[0] > 0 and result.looks > 400
    previous = 1.0
    for k in range(50, 1001, 50):
        p = ab.always_valid(events[:k], 0.05).p_value
        assert p <= previous
        previous = p


def test_always_valid_without_variance_is_not_testable():
    with pytest.raises(ab.NotTestable, match="variance"):
        ab.always_valid([(i % 2 == 1, 1.0) for i in range(100)])


def test_a_variant_that_always_fails_against_a_control_that_always_succeeds_is_significant():
    """Neither arm varies, so the plug-in variances carry no evidence; for 0/1 outcomes the look uses
    the pooled rate's variance (p = 1/2 here), and Λ is the formula's with V = τ²/0.01 / 20 per arm."""
    events = [(i % 2 == 1, float(i % 2 == 0)) for i in range(80)]   # control 40 x 1, variant 40 x 0
    with pytest.raises(ab.NotTestable, match="variance"):
        ab.always_valid(events, 0.05, min_per_arm=30)
    result = ab.always_valid(events, 0.05, min_per_arm=30, binary=True)
    variance, tau2 = 0.25 / 40 + 0.25 / 40, 0.01 * 0.25
    expected = ab.msprt_log_likelihood_ratio(-1.0, variance, tau2)
    assert result.p_value == pytest.approx(math.exp(-expected)) and result.p_value < 0.01
    assert result.ci[1] < 0
    same = [(i % 2 == 1, 1.0) for i in range(80)]     # equal rates: still no evidence either way
    with pytest.raises(ab.NotTestable, match="variance"):
        ab.always_valid(same, 0.05, min_per_arm=30, binary=True)


def test_an_arm_without_requests_is_not_testable_never_a_division_by_zero():
    with pytest.raises(ab.NotTestable, match="an arm has no requests"):
        ab.two_proportion_z_test(0, 0, 5, 10)
    with pytest.raises(ab.NotTestable, match="at least 2"):
        ab.welch_t_test([], [1.0, 2.0])
    with pytest.raises(ab.NotTestable, match="no look"):
        ab.always_valid([(True, 1.0), (True, 2.0)])


def test_equal_values_have_no_variance_even_when_their_mean_rounds():
    assert ab.mean([1000.3] * 3) != 1000.3   # the rounding that made a constant arm look variable
    assert ab.sample_variance([1000.3] * 3) == 0.0
    with pytest.raises(ab.NotTestable, match="no variance"):
        ab.welch_t_test([1000.3] * 3, [7.1] * 5)
