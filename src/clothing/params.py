"""Reading one section of ``params.yaml``, validated strictly by the schema of the stage that reads it.

Each stage declares its section's schema at its top and reads only that section: a typo
under ``quantize:`` is quantize's error, not fetch's, and a new quantize option changes
``stages/quantize.py`` alone, so DVC reruns quantize alone. ``params.yaml`` is the one
source of every value: the schemas have no defaults, and a missing key is an error.
Values are not coerced: ``"224"`` is not an integer and ``"5e-4"`` (PyYAML reads
exponents without a dot as text) is not a number.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from clothing.errors import PipelineError

PARAMS = Path("params.yaml")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


S = TypeVar("S", bound=Section)


def load_section(name: str, schema: type[S], keys: Iterable[str] | None = None, path: str | Path = PARAMS) -> S:
    """Section ``name`` of params.yaml as ``schema``; with ``keys``, only those keys of it (a shared section)."""
    path = Path(path)
    raw = read_params(path)
    section = raw.get(name)
    if not isinstance(section, dict):
        raise PipelineError(f"{path}: {name}: missing section")
    if keys is not None:
        section = {key: section[key] for key in keys if key in section}
    try:
        return schema.model_validate(section)
    except ValidationError as error:
        raise PipelineError(f"{path}: {_describe(error, name, schema)}") from None


def read_params(path: str | Path = PARAMS) -> dict:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PipelineError(f"{path}: cannot read params: {' '.join(str(error).split())}") from None
    if not isinstance(raw, dict):
        raise PipelineError(f"{path}: cannot read params: not a mapping of sections")
    return raw


def mirror_folders(path: str | Path = PARAMS) -> list[Path]:
    """The ``mirrors`` folders, relative ones taken from the workspace the user works in.

    A queued or temporary experiment (``dvc exp run --queue``/``--temp``) runs in a copy of
    the repo under ``.dvc/tmp/exps/``: there ``../shared/mirror`` must still mean the folder
    beside the workspace, or the copy would silently fall back to another source.
    """
    listed = read_params(path).get("mirrors", [])
    if not (isinstance(listed, list) and all(isinstance(m, str) for m in listed)):
        raise PipelineError(f"{path}: mirrors: should be a list of folder names")
    root = workspace()
    return [root / m for m in listed]


def workspace(cwd: Path | None = None) -> Path:
    """The repo the user works in, also from inside an experiment's copy under ``.dvc/tmp/exps/``."""
    parts = (cwd or Path.cwd()).resolve().parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return Path(*parts)


def _describe(error: ValidationError, section: str, schema: type[BaseModel]) -> str:
    problems = []
    for item in error.errors():
        key = ".".join([section, *(str(part) for part in item["loc"])])
        if item["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key{_suggestion(schema, item['loc'])}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {message}")
    return "; ".join(problems)


def _suggestion(schema: type[BaseModel], loc: tuple) -> str:
    model = schema
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
