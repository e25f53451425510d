"""params.yaml validation: each stage reads its own section strictly, and an error names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO, error_line, stage, stage_module, update_params

from clothing.errors import PipelineError
from clothing.params import load_section, workspace

SCHEMAS = {
    "fetch": ("fetch", "FetchParams"),
    "clean": ("clean", "CleanParams"),
    "split": ("split", "SplitParams"),
    "train": ("train", "TrainParams"),
    "evaluate": ("evaluate", "EvaluateParams"),
    "quantize": ("quantize", "QuantizeParams"),
}


def schema(section: str) -> type:
    module, name = SCHEMAS[section]
    return getattr(stage_module(module), name)


def write(tmp_path: Path, changes: dict, drop: tuple[str, str] | None = None) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    if drop:
        del params[drop[0]][drop[1]]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


@pytest.mark.parametrize("section", sorted(SCHEMAS))
def test_repo_params_are_valid(section: str) -> None:
    load_section(section, schema(section), path=REPO / "params.yaml")


def test_repo_defaults_are_read() -> None:
    train = load_section("train", schema("train"), path=REPO / "params.yaml")
    assert (
        train.fine_tune.unfreeze == yaml.safe_load((REPO / "params.yaml").read_text())["train"]["fine_tune"]["unfreeze"]
    )


@pytest.mark.parametrize(
    ("section", "changes", "message"),
    [
        ("split", {"split": {"sed": 1}}, "split.sed: unknown key (did you mean 'seed'?)"),
        ("split", {"split": {"seed": -1}}, "split.seed: Input should be greater than or equal to 0"),
        ("split", {"split": {"val": 0.3}}, "split: train + val + test must sum to 1, got 1.2"),
        ("split", {"split": {"group_by_sender": "yes"}}, "split.group_by_sender: Input should be a valid boolean"),
        ("fetch", {"fetch": {"retries": "many"}}, "fetch.retries: Input should be a valid integer"),
        ("clean", {"clean": {"keep_labels": ["Hat"], "drop_labels": ["Hat"]}}, "clean: labels both kept and dropped"),
        ("train", {"train": {"image_size": "224"}}, "train.image_size: Input should be a valid integer"),
        ("train", {"train": {"head": {"epochs": 2, "lr": "5e-4"}}}, "train.head.lr: Input should be a valid number"),
        ("train", {"train": {"backbone": "vgg99"}}, "train.backbone: unknown backbone 'vgg99', expected one of:"),
        ("quantize", {"quantize": {"variants": ["int4"]}}, "quantize.variants.0: Input should be 'float32'"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, section: str, changes: dict, message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        load_section(section, schema(section), path=write(tmp_path, changes))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_key_is_an_error_not_a_default(tmp_path: Path) -> None:
    path = write(tmp_path, {}, drop=("train", "fine_tune"))
    with pytest.raises(PipelineError, match=r"train\.fine_tune: Field required"):
        load_section("train", schema("train"), path=path)


def test_unparsable_params_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("split: [unclosed\n")
    with pytest.raises(PipelineError, match="cannot read params") as caught:
        load_section("split", schema("split"), path=path)
    assert "\n" not in str(caught.value)


def test_a_typo_in_one_section_does_not_stop_another_stage(project: Path) -> None:
    update_params(project, {"quantize": {"warmup_rns": 1}})
    stage(project, "fetch")
    assert (project / "data/raw/images.csv").is_file()
    line = error_line(stage(project, "quantize", check=False))
    assert line == "error: params.yaml: quantize.warmup_rns: unknown key (did you mean 'warmup_runs'?)"


def test_workspace_is_found_from_an_experiment_copy(tmp_path: Path) -> None:
    copy = tmp_path / "repo/.dvc/tmp/exps/tmpabc123"
    copy.mkdir(parents=True)
    assert workspace(copy) == tmp_path / "repo"
    assert workspace(tmp_path / "repo") == tmp_path / "repo"
