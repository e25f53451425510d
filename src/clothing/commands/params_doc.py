"""``python -m clothing.commands.params_doc``: write docs/params.md from the stages' schemas and params.yaml.

Each params.yaml section is read by a stage through a pydantic schema (``FetchParams`` in
``stages/fetch.py``, ...). The page lists every key of every schema: its type and bounds
from the schema, its committed value from params.yaml, and what it does from the comments
above it in params.yaml (or beside it in the schema). ``tests/test_params_doc.py`` fails when
the committed page differs from what this writes, so the reference cannot drift.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import sys
import types
import typing
from pathlib import Path

import yaml
from pydantic.fields import FieldInfo

from clothing.commands import command_parser
from clothing.errors import PipelineError, exit_code
from clothing.files import atomic_file
from clothing.params import Section

PAGE = Path("docs/params.md")
BASE_TYPES = {int: "integer", float: "number", str: "text", bool: "true or false", type(None): "null"}
BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def stage_schema(root: Path, section: str) -> type[Section]:
    """The schema ``<Section>Params`` (``block_time`` → ``BlockTimeParams``) that ``stages/<section>.py`` reads."""
    spec = importlib.util.spec_from_file_location(f"stage_{section}", root / "stages" / f"{section}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the schema's annotations through it
    spec.loader.exec_module(module)
    return getattr(module, f"{section.title().replace('_', '')}Params")


def type_text(annotation: object, metadata: list | tuple = ()) -> str:
    """A schema type as a reader says it: ``integer ≥ 1``, ``one of cosine, constant``, ``integer ≥ 2 or null``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0], [*metadata, *args[1:]])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(arg) for arg in args)
    if origin is list:
        return "list of " + type_text(args[0])
    if inspect.isclass(annotation) and issubclass(annotation, Section):
        return "section"
    constraints = _flat(metadata)
    bounds = [
        f"{sign} {getattr(m, key)}" for m in constraints for key, sign in BOUNDS if getattr(m, key, None) is not None
    ]
    bounds += [f"matching `{m.pattern}`" for m in constraints if getattr(m, "pattern", None)]
    base = BASE_TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))
    return f"{base} {', '.join(bounds)}" if bounds else base


def _flat(metadata: list | tuple) -> list:
    """Constraints, also those a ``Field(...)`` inside ``Annotated`` carries."""
    return [inner for m in metadata for inner in (m.metadata if isinstance(m, FieldInfo) else [m])]


def yaml_comments(text: str) -> dict[str, str]:
    """Each key path of params.yaml (``train.fine_tune.lr``) and the comment lines right above it."""
    comments, block, stack = {}, [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            block.append(stripped.lstrip("#").strip())
            continue
        match = re.match(r"^(\s*)([A-Za-z_]\w*):", line)
        if match:
            depth = len(match[1]) // 2
            stack = [*stack[:depth], match[2]]
            if block:
                comments[".".join(stack)] = " ".join(block)
        block = []
    return comments


def schema_comments(schema: type[Section]) -> dict[str, str]:
    """The comment beside each field in the schema's source (``views: int  # ...``)."""
    found = {}
    for cls in schema.__mro__:
        if inspect.isclass(cls) and issubclass(cls, Section) and cls is not Section:
            for name, comment in re.findall(r"^\s+(\w+): .*?#\s*(.+)$", inspect.getsource(cls), re.MULTILINE):
                found.setdefault(name, comment.strip())
    return found


def rows(schema: type[Section], values: dict, comments: dict[str, str], prefix: str) -> list[tuple[str, str, str, str]]:
    """(key, type, committed value, what it does) for every field, nested sections after their parent's fields."""
    beside, table, nested = schema_comments(schema), [], []
    for name, field in schema.model_fields.items():
        key = f"{prefix}.{name}"
        if inspect.isclass(field.annotation) and issubclass(field.annotation, Section):
            nested += rows(field.annotation, values.get(name, {}), comments, key)
            continue
        value = json.dumps(values.get(name), ensure_ascii=False)
        table.append(
            (key, type_text(field.annotation, field.metadata), value, comments.get(key) or beside.get(name, ""))
        )
    return table + nested


def readers(dvc_yaml: dict) -> dict[str, list[str]]:
    """Each params.yaml section and the stages that read it (dvc.yaml's ``params:``)."""
    found: dict[str, list[str]] = {}
    for stage, spec in dvc_yaml["stages"].items():
        for entry in spec.get("params", []):
            stages = found.setdefault(str(entry).split(".")[0], [])
            stages += [stage] if stage not in stages else []
    return found


def page(root: Path) -> str:
    params_text = (root / "params.yaml").read_text()
    params, comments = yaml.safe_load(params_text), yaml_comments(params_text)
    read_by = readers(yaml.safe_load((root / "dvc.yaml").read_text()))
    lines = [
        "# Params reference",
        "",
        "Generated by `python -m clothing.commands.params_doc` from the stages' schemas (type and bounds) and",
        "`params.yaml` (committed value, and the comment above each key). Do not edit: `tests/test_params_doc.py`",
        "fails when this page is stale. Change a value for one run with `dvc exp run -S section.key=value`.",
        "",
        "## mirrors",
        "",
        comments.get("mirrors", ""),
        f"Committed value: `{json.dumps(params['mirrors'])}`.",
    ]
    for section in (name for name in params if name != "mirrors"):
        lines += ["", f"## {section}", "", f"Read by: {', '.join(read_by.get(section, []))}.", ""]
        lines += ["| key | type | committed value | what it does |", "|---|---|---|---|"]
        for key, kind, value, text in rows(stage_schema(root, section), params[section], comments, section):
            lines.append(f"| `{key}` | {kind} | `{value}` | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.params_doc", __doc__)
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: here)")
    args = parser.parse_args(argv)
    return exit_code(lambda: write(args.root))


def write(root: Path) -> None:
    if not (root / "params.yaml").is_file():
        raise PipelineError(f"{root / 'params.yaml'}: missing; run this at the repository's top")
    with atomic_file(root / PAGE) as tmp:
        tmp.write_text(page(root))
    print(f"params_doc: wrote {root / PAGE}")


if __name__ == "__main__":
    sys.exit(main())
