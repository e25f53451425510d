"""Figures the README quotes from a command are what the command prints on the committed files."""

from __future__ import annotations

from conftest import REPO

from clothing.analysis.metrics import BootstrapParams
from clothing.commands.compare import paired_comparison
from clothing.files import read_table
from clothing.params import load_section


def points(share: float) -> str:
    return f"{share * 100:+.1f}".replace("-", "\N{MINUS SIGN}")  # the README writes a true minus


def paired(a: str, b: str) -> tuple[dict, str]:
    """compare --cross-validation A B on the committed runs, and the README as one line of words."""
    runs = [read_table(REPO / f"metrics/cv/{name}_predictions.csv") for name in (a, b)]
    bootstrap = load_section("evaluate", BootstrapParams, BootstrapParams.model_fields, REPO / "params.yaml")
    return paired_comparison(*runs, bootstrap), " ".join((REPO / "README.md").read_text().split())


def test_the_paired_five_fold_interval_is_what_compare_prints() -> None:
    """`python -m clothing.commands.compare --cross-validation cv5 cv5r`, as the README says beside the figure."""
    result, readme = paired("cv5", "cv5r")
    low, high = result["difference_ci95"]
    assert f"{points(result['difference'])} points (95 % CI {points(low)} to {points(high)};" in readme
    assert (
        f"{result['only_a_right']} photos only the old models get right, {result['only_b_right']} only the new"
        in readme
    )


def test_the_ensembles_gain_is_what_compare_prints() -> None:
    """`python -m clothing.commands.compare --cross-validation cv5r ens-mnv2-lite0`, as the README's table says."""
    result, readme = paired("cv5r", "ens-mnv2-lite0")
    low, high = result["difference_ci95"]
    gain = f"{points(result['difference'])} points over the default, paired 95 % CI {points(low)} to {points(high)}"
    assert gain in readme
