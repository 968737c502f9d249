"""Exact steady-state answers for M/M/c, the queue ``kefu simulate`` drives the decision core through.

One queue, c identical servers, Poisson arrivals at rate λ, exponential service of mean 1/μ (the same for every
class), offered load a = λ/μ Erlangs; a steady state needs a < c.

* Erlang B and C, and the FIFO mean wait and service level that follow from Erlang C.
* Cobham's non-preemptive priority waits (A. Cobham, "Priority assignment in waiting line problems", Operations
  Research 2(1), 1954), in the M/M/c form given by R. C. Larson and A. R. Odoni, *Urban Operations Research*,
  §4.9.3, eqs. (4.111)–(4.112) (web.mit.edu/urban_or_book/www/book/chapter4/4.9.3.html).
"""

import math
from collections.abc import Sequence


def erlang_b(a: float, c: int) -> float:
    """Erlang B blocking probability, by the recursion B(k) = a·B(k-1) / (k + a·B(k-1)).

    The recursion never forms a^c or c!, so it stays exact for hundreds of agents where the textbook
    formula overflows.
    """
    if c < 0 or a < 0:
        raise ValueError(f"need a >= 0 and c >= 0, got a={a}, c={c}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def erlang_c(a: float, c: int) -> float:
    """Erlang C: the probability that an arrival waits, in M/M/c with offered load ``a`` Erlangs."""
    if c < 1 or a < 0:
        raise ValueError(f"need a >= 0 and c >= 1, got a={a}, c={c}")
    if a >= c:
        return 1.0  # no steady state: the queue grows without bound and everyone waits
    b = erlang_b(a, c)
    return c * b / (c - a * (1 - b))


def erlang_c_mean_wait(a: float, c: int, handle_seconds: float) -> float:
    """Mean wait over all arrivals, P(wait) / (c·μ − λ), in seconds."""
    return erlang_c(a, c) * handle_seconds / (c - a)


def erlang_c_service_level(a: float, c: int, handle_seconds: float, within_seconds: float) -> float:
    """Share of arrivals answered within ``within_seconds``: 1 − P(wait)·e^(−(c·μ − λ)·T)."""
    return 1 - erlang_c(a, c) * math.exp(-(c - a) * within_seconds / handle_seconds)


def priority_mean_waits(a: float, c: int, handle_seconds: float, shares: Sequence[float]) -> list[float]:
    """Mean wait in queue of each priority class, highest priority first, in seconds (Cobham's formula).

    ``shares`` are the classes' fractions of the arrivals (summing to 1), so class i arrives at λ_i = share_i·λ.
    Service is non-preemptive: a free agent takes the oldest contact of the highest class waiting, and a contact in
    service is never interrupted. Then

        W_k = W0 / ((1 − σ_{k−1})·(1 − σ_k)),   σ_k = Σ_{i ≤ k} λ_i / (c·μ),   σ_0 = 0,

    where W0 is the mean time an arrival must wait for *some* agent to free up, whatever its class: zero unless all
    c agents are busy (probability Erlang C, by PASTA), and then the minimum of c exponential residual handle times,
    of mean 1/(c·μ). So W0 = C(c, a) / (c·μ). With one class W_1 = C / (c·μ − λ), Erlang C's mean wait; the
    λ-weighted mean of the W_k is that same FIFO wait for any split (the discipline does not change the work).
    """
    if not 0 < a < c:
        raise ValueError(f"need 0 < a < c for a steady state, got a={a}, c={c}")
    if not shares or any(s < 0 for s in shares) or not math.isclose(math.fsum(shares), 1.0):
        raise ValueError(f"class shares must be non-negative and sum to 1, got {list(shares)}")
    w0 = erlang_c(a, c) * handle_seconds / c
    waits = []
    above = 0.0  # σ_{k−1}: the load of the classes served before class k
    for share in shares:
        upto = above + share * a / c  # σ_k
        waits.append(w0 / ((1 - above) * (1 - upto)))
        above = upto
    return waits
