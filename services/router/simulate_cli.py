"""``kefu simulate``, the command: its options, one table row per agent count, and the verdict (``simulate``)."""

import argparse
import sys

from tqdm import tqdm

from services.router.batch_means import BATCHES, Estimate
from services.router.simulate import HIGH, ROUGH_BATCH, check_inputs, simulate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``kefu simulate``."""
    parser.add_argument("--erlangs", type=float, default=2.5, help="offered load a = λ/μ (default 2.5)")
    parser.add_argument("--agents", type=int, nargs="+", default=[3, 4, 5, 6], help="values of c (default 3 4 5 6)")
    parser.add_argument("--arrivals", type=int, default=100_000, help="measured arrivals per run (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--handle-seconds", type=float, default=180.0, help="mean handle time 1/μ (default 180)")
    parser.add_argument("--within", type=float, default=20.0, help="service-level threshold T in s (default 20)")
    parser.add_argument(
        "--priority-share",
        type=float,
        default=None,
        metavar="P",
        help="give this fraction of arrivals a higher priority and compare each class's wait with Cobham's formula",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.002,
        help="floor under the ±95%% interval when judging: in P(wait), and in mean handle times for a wait "
        "(default 0.002)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar (there is none when stderr is no TTY)")


def main(args: argparse.Namespace) -> int:
    """Print one row per agent count; exit 1 when a judged figure's theory lies outside its interval."""
    two_classes = args.priority_share is not None
    try:
        for c in args.agents:
            check_inputs(erlangs=args.erlangs, agents=c, arrivals=args.arrivals, priority_share=args.priority_share)
    except ValueError as exc:
        print(f"kefu simulate: {exc}", file=sys.stderr)
        return 2
    header = (
        f"M/M/c through the decision core: a = {args.erlangs:g} Erlangs, mean handle {args.handle_seconds:g} s, "
        f"{args.arrivals} arrivals per row, seed {args.seed}"
    )
    if two_classes:
        header += f"; {args.priority_share:.0%} of arrivals at priority {HIGH} (served first, non-preemptive)"
    print(header, flush=True)
    if two_classes:
        print(
            f"{'c':>3} {'arrivals':>9} {'P(wait)':>8} {'±95%':>6} {'ErlangC':>8} {'Wq(s)hi':>8} {'±95%':>6} "
            f"{'Cobham':>8} {'Wq(s)lo':>8} {'±95%':>6} {'Cobham':>8} verdict"
        )
    else:
        within = f"SL({args.within:g}s)"
        print(
            f"{'c':>3} {'arrivals':>9} {'P(wait)':>8} {'±95%':>6} {'ErlangC':>8} {'Wq(s)':>8} {'±95%':>6} "
            f"{'ErlangC':>8} {within:>9} {'±95%':>6} {'ErlangC':>8} verdict"
        )
    misses: list[str] = []
    for c in args.agents:
        try:
            with tqdm(
                total=args.arrivals,
                desc=f"c={c}",
                unit=" arrivals",
                unit_scale=True,
                leave=False,
                file=sys.stderr,
                disable=args.quiet or not sys.stderr.isatty(),
            ) as bar:
                r = simulate(
                    erlangs=args.erlangs,
                    agents=c,
                    arrivals=args.arrivals,
                    seed=args.seed,
                    handle_seconds=args.handle_seconds,
                    within_seconds=args.within,
                    priority_share=args.priority_share,
                    advance=bar.update,
                )
        except ValueError as exc:
            print(f"kefu simulate: {exc}", file=sys.stderr)
            return 2
        row_misses = r.misses(args.tolerance)
        misses += row_misses
        row = f"{r.agents:>3} {r.arrivals:>9} {_cell(r.p_wait, 4)} {r.erlang_c:>8.4f}"
        if two_classes:
            row += "".join(f" {_cell(k.mean_wait, 2)} {k.cobham_mean_wait:>8.2f}" for k in r.classes)
        else:
            row += (
                f" {_cell(r.mean_wait, 2)} {r.erlang_c_mean_wait:>8.2f}"
                f" {r.service_level.mean:>9.4f} {r.service_level.half_width:>6.4f} {r.erlang_c_service_level:>8.4f}"
            )
        print(f"{row} {'off' if row_misses else 'ok'}", flush=True)
    judged = "P(wait) and each class's Wq" if two_classes else "P(wait) and Wq"
    batch = args.arrivals // BATCHES
    rough = f" Batches of {batch} arrivals are short: the intervals are rough." if batch < ROUGH_BATCH else ""
    print(f"±95%: a 95% confidence interval from {BATCHES} batch means of consecutive arrivals.{rough}")
    print(
        f"A row is ok when its {judged} lie within their intervals (at least ±{args.tolerance:g}, in mean handle "
        "times for a wait) of the theory; a correct core is off on a given figure about 1 time in 20."
    )
    for miss in misses:
        print(f"kefu simulate: {miss}", file=sys.stderr)
    return 1 if misses else 0


def _cell(estimate: Estimate, decimals: int) -> str:
    return f"{estimate.mean:>8.{decimals}f} {estimate.half_width:>6.{decimals}f}"


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="kefu simulate", description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
