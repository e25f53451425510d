"""params.yaml validation: one clear error that names the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from clothing.errors import PipelineError
from clothing.params import load_params


def write(tmp_path: Path, changes: dict) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in changes.items():
        params.setdefault(section, {}).update(values)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_repo_params_are_valid() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.split.train == 0.8
    assert "Not sure" in params.clean.drop_labels


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"split": {"sed": 1}}, "split.sed: unknown key (did you mean 'seed'?)"),
        ({"split": {"seed": -1}}, "split.seed: Input should be greater than or equal to 0"),
        ({"split": {"val": 0.3}}, "split: train + val + test must sum to 1, got 1.2"),
        ({"split": {"group_by_sender": "yes"}}, "split.group_by_sender: Input should be a valid boolean"),
        ({"fetch": {"content_sha256": "abc"}}, "fetch.content_sha256: String should match pattern"),
        ({"fetch": {"retries": "many"}}, "fetch.retries: Input should be a valid integer"),
        ({"clean": {"keep_labels": ["Hat"], "drop_labels": ["Hat"]}}, "clean: labels both kept and dropped"),
        ({"fecth": {}}, "fecth: unknown key (did you mean 'fetch'?)"),
    ],
)
def test_bad_params_name_the_key(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(PipelineError) as caught:
        load_params(write(tmp_path, changes))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_unparsable_params_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("split: [unclosed\n")
    with pytest.raises(PipelineError, match="cannot read params") as caught:
        load_params(path)
    assert "\n" not in str(caught.value)
