"""docs/params.md is generated from the stages' schemas and params.yaml: stale means a failing test."""

from __future__ import annotations

import yaml
from conftest import REPO

from clothing.commands.params_doc import page, type_text


def test_the_committed_params_reference_is_what_the_schemas_and_params_yaml_say() -> None:
    assert (REPO / "docs/params.md").read_text() == page(REPO), (
        "docs/params.md is stale: run `python -m clothing.commands.params_doc` and commit it"
    )


def leaf_keys(section: dict, prefix: str) -> list[str]:
    return [
        key
        for name, value in section.items()
        for key in (leaf_keys(value, f"{prefix}.{name}") if isinstance(value, dict) else [f"{prefix}.{name}"])
    ]


def test_every_key_of_params_yaml_has_its_row() -> None:
    text, params = page(REPO), yaml.safe_load((REPO / "params.yaml").read_text())
    keys = [key for section, values in params.items() if section != "mirrors" for key in leaf_keys(values, section)]
    assert len(keys) > 40 and [key for key in keys if f"| `{key}` |" not in text] == []


def test_types_read_as_a_reader_says_them() -> None:
    from typing import Annotated, Literal

    from pydantic import Field, NonNegativeInt

    assert type_text(NonNegativeInt) == "integer ≥ 0"
    assert type_text(Annotated[int, Field(ge=2)] | None) == "integer ≥ 2 or null"
    assert type_text(list[Literal["float32", "int8"]]) == "list of one of float32, int8"
