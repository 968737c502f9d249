"""95 % confidence intervals from batch means, for the figures ``kefu simulate`` measures.

A run's values in arrival order are cut into ``BATCHES`` consecutive batches, and the interval is
mean ± t(0.975, BATCHES − 1)·s/√BATCHES over the batch means, s their standard deviation. Batches of thousands of
consecutive arrivals are nearly independent where single waits are not (a binomial interval would be far too narrow).
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

BATCHES = 20
# Student's t at 97.5 % for BATCHES - 1 = 19 degrees of freedom: a 95 % interval from batch means
T_975_19 = 2.093


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure measured over a run: its mean and the half width of its 95 % batch-means confidence interval."""

    mean: float
    half_width: float

    def covers(self, expected: float, floor: float = 0.0) -> bool:
        """Whether ``expected`` lies within the interval, widened to at least ± ``floor``."""
        return abs(self.mean - expected) <= max(self.half_width, floor)


def batch_means(values: Sequence[float], what: str = "values") -> Estimate:
    """The mean of ``values`` (in run order) and its 95 % interval from ``BATCHES`` consecutive batch means."""
    n = len(values)
    if n < BATCHES:
        raise ValueError(f"only {n} {what}: need at least {BATCHES} for a confidence interval")
    means = [statistics.fmean(values[i * n // BATCHES : (i + 1) * n // BATCHES]) for i in range(BATCHES)]
    return Estimate(statistics.fmean(values), T_975_19 * statistics.stdev(means) / math.sqrt(BATCHES))
