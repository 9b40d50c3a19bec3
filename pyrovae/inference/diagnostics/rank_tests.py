"""Is a sample of ranks (or PIT values) uniform, and if not, which way is it off?

Input: fractional ranks ``u: (N, m)`` in (0, 1), one column per statistic. A rank
``r in {0, ..., L}`` of the truth among L draws enters as ``u = (r + 1/2) / (L + 1)``; a
randomized PIT value (a discrete latent) enters as it is, uniform on (0, 1) when calibrated.

Per statistic:

- **Pearson's chi-square** of the binned values against the uniform counts (at most 20 bins,
  at least 5 expected rows each; for ranks the bin edges fall between rank values, so each bin
  holds whole ranks and its expected share is exact): the p-value of the uniformity test.
- **Two moment z-scores**, each approximately standard normal under uniformity:
  ``bias_z = (mean(u) - 1/2) / sqrt(var / N)`` and
  ``spread_z = (s^2(u) - var) / sqrt((mu4 - var^2) / N)``, with ``var`` and ``mu4`` the exact
  variance and fourth central moment of the uniform (discrete for ranks, continuous for PIT).
- **The ECDF band** (Säilynoja, Bürkner and Vehtari, 2022): whether the ECDF of ``u`` leaves
  the simultaneous 95% band of a uniform sample of N at the evaluation points ``i / (L + 1)``,
  the graphical test the SBC figure draws, and the p-value of that test.

The verdict of a statistic (Talts et al., 2018, section 4): with ``m`` statistics tested,
each of its three tests is run at the Bonferroni level ``alpha / (3 m)``, and ``c`` is the
two-sided normal quantile at that level. A statistic is *calibrated* unless its chi-square
p-value is below that level or one of its z-scores exceeds ``c`` in size. Otherwise, the
larger z-score says which way: ``bias_z`` -> *biased*, the truth above q's draws (``bias_z >
0``: q is too low) or below them; ``spread_z > c`` -> *overconfident* (ranks pile at both
ends, a U: q is too narrow); ``spread_z < -c`` -> *underconfident* (ranks pile in the
middle, a hump: q is too wide); neither -> *miscalibrated* (the shape is off in another
way).
"""

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

DEFAULT_ALPHA = 0.05
"""Family-wise significance level of the uniformity tests of one diagnosis."""

BAND_PROBABILITY = 0.95
"""Simultaneous coverage of the ECDF band that the figure draws."""

MAX_BINS = 20
MIN_EXPECTED_PER_BIN = 5
MAX_EVAL_POINTS = 99

CALIBRATED = "calibrated"
OVERCONFIDENT = "overconfident"
UNDERCONFIDENT = "underconfident"
BIASED_LOW = "biased (q too low)"
BIASED_HIGH = "biased (q too high)"
MISCALIBRATED = "miscalibrated"


@dataclass(frozen=True)
class RankTest:
    """The uniformity test of one statistic.

    :param name: the statistic (``"z[0]"``, ``"log p(z)"``, ``"pc1"``, ...).
    :param kind: ``"rank"`` (continuous latent: rank among L draws) or ``"pit"`` (discrete
        latent: randomized PIT).
    :param p_value: chi-square p-value of uniformity.
    :param bias_z: z-score of the mean fractional rank against 1/2.
    :param spread_z: z-score of their variance against the uniform's.
    :param ecdf_p_value: p-value of the ECDF test: the share of uniform samples of N whose
        ECDF strays as far from the uniform CDF (smallest pointwise binomial tail).
    :param outside_band: whether the ECDF leaves the simultaneous 95% band.
    :param verdict: calibrated, overconfident, underconfident, biased (q too low / too high)
        or miscalibrated.
    """

    name: str
    kind: str
    p_value: float
    bias_z: float
    spread_z: float
    ecdf_p_value: float
    outside_band: bool
    verdict: str

    def as_dict(self) -> dict:
        return asdict(self)


def fractional_ranks(ranks: np.ndarray, draws: int) -> np.ndarray:
    """Ranks ``(N, m)`` in ``{0, ..., draws}`` -> ``(r + 1/2) / (draws + 1)`` in (0, 1)."""
    return (np.asarray(ranks, dtype=np.float64) + 0.5) / (draws + 1)


def uniform_moments(values: int | None) -> tuple[float, float]:
    """``(variance, fourth central moment)`` of the uniform on ``values`` equally spaced
    points ``(i + 1/2) / values`` (None: the continuous uniform on (0, 1))."""
    if values is None:
        return 1 / 12, 1 / 80
    n = float(values)
    return (n * n - 1) / (12 * n * n), (n * n - 1) * (3 * n * n - 7) / (240 * n**4)


def bin_edges(num: int, values: int | None) -> np.ndarray:
    """Edges in [0, 1] of at most 20 bins with at least 5 expected of ``num`` per bin; for
    ``values`` rank values the edges fall between them (multiples of ``1 / values``)."""
    bins = max(2, min(MAX_BINS, num // MIN_EXPECTED_PER_BIN))
    if values is None:
        return np.linspace(0.0, 1.0, bins + 1)
    bins = min(bins, values)
    return np.unique(np.round(np.linspace(0, values, bins + 1))) / values


def chi_square_p(u: np.ndarray, edges: np.ndarray) -> float:
    """Pearson's chi-square p-value of ``u: (N,)`` binned at ``edges`` against uniform."""
    counts, _ = np.histogram(u, bins=edges)
    expected = len(u) * np.diff(edges)
    return float(stats.chisquare(counts, expected).pvalue)


def moment_z(u: np.ndarray, values: int | None) -> tuple[float, float]:
    """``(bias_z, spread_z)`` of ``u: (N,)`` (see the module docstring)."""
    n = len(u)
    var, mu4 = uniform_moments(values)
    bias = (float(u.mean()) - 0.5) / math.sqrt(var / n)
    spread = (float(u.var(ddof=1)) - var) / math.sqrt((mu4 - var * var) / n)
    return bias, spread


def eval_points(draws: int | None) -> np.ndarray:
    """Where the ECDF is compared with the uniform CDF: ``i / (L + 1)`` for ranks among L
    draws (at most 99 of them, evenly spread), a grid of 99 for PIT values."""
    if draws is None:
        return np.arange(1, MAX_EVAL_POINTS + 1) / (MAX_EVAL_POINTS + 1)
    i = np.unique(np.round(np.linspace(1, draws, min(draws, MAX_EVAL_POINTS))).astype(int))
    return i / (draws + 1)


BAND_SIMULATIONS = 4000


def _tail_table(num: int, points: np.ndarray) -> np.ndarray:
    """``(P, num + 1)``: the two-sided binomial tail probability of each count ``k`` of
    ``num`` uniform draws at or below each point."""
    k = np.arange(num + 1)
    below = stats.binom.cdf(k, num, points[:, None])
    above = stats.binom.sf(k - 1, num, points[:, None])
    return np.minimum(1.0, 2 * np.minimum(below, above))


def _tail(table: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Smallest tail probability over the points of each ECDF ``counts (..., P)``."""
    return table[np.arange(table.shape[0]), counts].min(-1)


@dataclass(frozen=True)
class EcdfBand:
    """The simultaneous band of the ECDF of ``num`` uniform draws at ``points (P,)``:
    ``lower``, ``upper (P,)`` shares; ``gamma`` the pointwise level that gives it
    ``BAND_PROBABILITY`` coverage; ``null_tails (S,)`` the simulated smallest tails;
    ``table (P, num + 1)`` the tail probability of each count at each point."""

    num: int
    points: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    gamma: float
    null_tails: np.ndarray
    table: np.ndarray

    def p_value(self, u: np.ndarray) -> float:
        """Share of uniform samples whose ECDF strays at least as far as that of ``u``'s."""
        observed = _tail(self.table, np.searchsorted(np.sort(u), self.points, side="right"))
        return float((self.null_tails <= observed).mean())

    def outside(self, u: np.ndarray) -> bool:
        ecdf = ecdf_at(u, self.points)
        return bool(((ecdf < self.lower) | (ecdf > self.upper)).any())


def ecdf_band(num: int, points: np.ndarray, seed: int = 0) -> EcdfBand:
    """The simultaneous ``BAND_PROBABILITY`` band of Säilynoja, Bürkner and Vehtari (2022):
    pointwise binomial intervals at the level ``gamma`` for which a uniform sample's ECDF
    stays inside all of them with that probability, ``gamma`` found from
    ``BAND_SIMULATIONS`` simulated ECDFs (multinomial counts between the points). Written
    here, vectorized, because ArviZ's ``ecdf_confidence_band`` takes seconds per sample size
    without numba (pure-Python optimization); the test checks the two bands agree."""
    rng = np.random.default_rng(seed)
    cells = np.diff(np.concatenate([[0.0], points, [1.0]]))
    counts = rng.multinomial(num, cells, size=BAND_SIMULATIONS)[:, :-1].cumsum(1)
    table = _tail_table(num, points)
    tails = np.sort(_tail(table, counts))
    gamma = float(np.quantile(tails, 1 - BAND_PROBABILITY))
    lower = stats.binom.ppf(gamma / 2, num, points) / num
    upper = stats.binom.isf(gamma / 2, num, points) / num
    return EcdfBand(num, points, lower, upper, gamma, tails, table)


def ecdf_at(u: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The ECDF of ``u: (N,)`` at ``points``: share of ``u <= point``."""
    return np.searchsorted(np.sort(u), points, side="right") / len(u)


def verdict(p_value: float, bias_z: float, spread_z: float, level: float) -> str:
    """The direction rule of the module docstring at the per-statistic ``level``."""
    c = float(stats.norm.isf(level / 2))
    if p_value >= level and abs(bias_z) <= c and abs(spread_z) <= c:
        return CALIBRATED
    if abs(bias_z) > c and abs(bias_z) >= abs(spread_z):
        return BIASED_LOW if bias_z > 0 else BIASED_HIGH
    if spread_z > c:
        return OVERCONFIDENT
    if spread_z < -c:
        return UNDERCONFIDENT
    if abs(bias_z) > c:
        return BIASED_LOW if bias_z > 0 else BIASED_HIGH
    return MISCALIBRATED


def uniformity_tests(
    columns: list[tuple[str, str, np.ndarray, int | None]], alpha: float = DEFAULT_ALPHA
) -> tuple[list[RankTest], float, dict]:
    """Test each ``(name, kind, u (N,), values)`` column; ``values`` is L + 1 for ranks among
    L draws, None for PIT values. Returns the tests, the per-test level ``alpha / (3 m)``
    and the ECDF bands ``{values: EcdfBand}`` the tests used."""
    level = alpha / (3 * max(1, len(columns)))  # three tests per statistic
    bands: dict = {}
    tests = []
    for name, kind, u, values in columns:
        u = np.asarray(u, dtype=np.float64)
        if values not in bands:
            bands[values] = ecdf_band(len(u), eval_points(None if values is None else values - 1))
        band = bands[values]
        p = chi_square_p(u, bin_edges(len(u), values))
        bias, spread = moment_z(u, values)
        tests.append(
            RankTest(
                name=name,
                kind=kind,
                p_value=p,
                bias_z=bias,
                spread_z=spread,
                ecdf_p_value=band.p_value(u),
                outside_band=band.outside(u),
                verdict=verdict(p, bias, spread, level),
            )
        )
    return tests, level, bands


def overall_verdict(tests: list[RankTest]) -> str:
    """``"calibrated"`` when no statistic is rejected; else each verdict with its count,
    most frequent first (``"overconfident (10 of 12 statistics), biased (q too low) (2 of
    12 statistics)"``)."""
    rejected = [t.verdict for t in tests if t.verdict != CALIBRATED]
    if not rejected:
        return CALIBRATED
    counts: dict[str, int] = {}
    for v in rejected:
        counts[v] = counts.get(v, 0) + 1
    order = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{v} ({k} of {len(tests)} statistics)" for v, k in order)
