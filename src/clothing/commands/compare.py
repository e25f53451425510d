"""Does experiment B really beat A? A paired comparison on the same test photos.

    python -m clothing.commands.compare A B
    python -m clothing.commands.compare --cross-validation cv5 cv5r

A and B are git revisions or DVC experiment names (``dvc exp show`` lists them) or
``workspace``; each one's ``metrics/eval/predictions.csv`` is read. With
``--cross-validation`` they name two cross-validation runs of the same folds, and their
pooled out-of-fold predictions (``metrics/cv/<name>_predictions.csv``) are compared.
The bootstrap is params.yaml's ``evaluate.bootstrap_*``, as evaluate's. Both models answered
the same photos, so the test is on the photos where they differ: McNemar's exact test
(a binomial test on the photos only one of them gets right) and a paired bootstrap
interval for the accuracy difference. Unpaired intervals of two models overlap far more
than the difference's own interval is wide: compare models with this, not with two
``dvc metrics show`` figures.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap

from clothing.analysis.metrics import BootstrapParams, bootstrap_params
from clothing.commands import command_parser
from clothing.commands.crossval import run_file
from clothing.commands.experiments import table_at
from clothing.errors import PipelineError, exit_code
from clothing.files import read_table

PREDICTIONS = "metrics/eval/predictions.csv"


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, params: BootstrapParams) -> dict:
    """McNemar's exact test and a bootstrap 95 % interval of accuracy(B) - accuracy(A), on shared photos."""
    for name, run in (("A", a), ("B", b)):
        if run["image"].duplicated().any():
            twice = sorted(set(run["image"][run["image"].duplicated()]))
            raise PipelineError(
                f"run {name} scores {len(twice)} photo(s) twice, e.g. {twice[0]}: not one answer per photo"
            )
    if set(a["image"]) != set(b["image"]):
        raise PipelineError(f"the two runs scored different test photos ({len(a)} and {len(b)}): not comparable")
    both = a.merge(b, on=["image", "actual"], suffixes=("_a", "_b"), validate="one_to_one")
    if len(both) != len(a):
        raise PipelineError("the two runs give some photos different true labels: not comparable")
    right_a = (both["predicted_a"] == both["actual"]).to_numpy(float)
    right_b = (both["predicted_b"] == both["actual"]).to_numpy(float)
    only_a, only_b = int((right_a > right_b).sum()), int((right_b > right_a).sum())
    p_value = binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
    difference = bootstrap(
        (right_b - right_a,),
        np.mean,
        n_resamples=params.bootstrap_resamples,
        method="percentile",
        rng=np.random.default_rng(params.bootstrap_seed),
    ).confidence_interval
    return {
        "photos": len(both),
        "accuracy_a": round(right_a.mean(), 4),
        "accuracy_b": round(right_b.mean(), 4),
        "difference": round(right_b.mean() - right_a.mean(), 4),
        "difference_ci95": [round(float(difference.low), 4), round(float(difference.high), 4)],
        "only_a_right": only_a,
        "only_b_right": only_b,
        "mcnemar_p": round(float(p_value), 4),
    }


def verdict(result: dict) -> str:
    low, high = result["difference_ci95"]
    p = result["mcnemar_p"]  # rounded to 4 places: 0.0 means below 0.0001
    p_value = f"McNemar p = {p}" if p > 0 else "McNemar p < 0.0001"
    if low > 0 or high < 0:
        return f"{'B' if low > 0 else 'A'} is better: the 95 % interval of the difference excludes 0 ({p_value})"
    return f"no detectable difference: the 95 % interval of the difference includes 0 ({p_value})"


def predictions_at(revision: str) -> pd.DataFrame:
    return table_at(revision, PREDICTIONS)


def pooled_predictions(name: str) -> pd.DataFrame:
    """A cross-validation run's out-of-fold predictions, every photo once (``python -m clothing.commands.crossval``)."""
    return read_table(run_file(name, "predictions"))


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.compare", __doc__)
    parser.add_argument("a", help="revision, experiment name or 'workspace' (a cross-validation run's name)")
    parser.add_argument("b", help="revision, experiment name or 'workspace' (a cross-validation run's name)")
    parser.add_argument("--cross-validation", action="store_true", help="compare two runs' out-of-fold predictions")
    args = parser.parse_args(argv)
    read = pooled_predictions if args.cross_validation else predictions_at
    return exit_code(lambda: report(args.a, args.b, read))


def report(a: str, b: str, read: Callable[[str], pd.DataFrame]) -> None:
    result = paired_comparison(read(a), read(b), bootstrap_params())
    print(
        f"A {a}: {result['accuracy_a']:.4f}   B {b}: {result['accuracy_b']:.4f}   "
        f"B - A {result['difference']:+.4f} (95 % CI {result['difference_ci95'][0]:+.4f} to "
        f"{result['difference_ci95'][1]:+.4f}) on {result['photos']} photos; only A right {result['only_a_right']}, "
        f"only B right {result['only_b_right']}"
    )
    print(verdict(result))


if __name__ == "__main__":
    sys.exit(main())
