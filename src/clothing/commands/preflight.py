"""``python -m clothing.commands.preflight``: can every stage start on this machine? Asked in seconds, before any runs.

Two checks, each ending in one line per problem and exit code 1:

- **Libraries.** Every Python extension module installed (a ``.so`` that Python can import)
  finds the shared libraries it links (``ldd``). A fresh machine lacks some system
  libraries a developer's machine happens to have; the line names the library and the
  Debian package that, by Debian's naming rules, provides it.
- **Stage imports.** Every module a stage of ``dvc.yaml`` imports, at the top of a file or
  inside a function, in the stage's script and in the ``clothing`` modules it uses, imports.
  An import inside a function is otherwise met only when the stage gets there, perhaps after
  the stages before it trained for twenty minutes.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import importlib.util
import re
import shlex
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import yaml

from clothing.commands import command_parser
from clothing.errors import PipelineError, exit_code

# Installed for their pure-Python half only: no stage imports their native modules (the stage
# import check and tests/test_metadata.py hold that), which link libusb-1.0.
NATIVE_HALF_UNUSED = ("tensorflow_lite_support",)


def extension_modules(site_packages: Path) -> list[Path]:
    """The ``.so`` files under ``site_packages`` that Python can import (they define ``PyInit_<name>``).

    Libraries a wheel vendors (``h5py.libs/``) and plugins loaded by hand (LiteRT's vendor
    dispatchers) are left out: they are found through the module that loads them.
    """
    suffixes = tuple(s for s in importlib.machinery.EXTENSION_SUFFIXES if s.endswith(".so"))
    found = []
    for path in sorted(site_packages.rglob("*.so")):
        name = path.name.split(".")[0]
        if path.name.endswith(suffixes) and not path.is_symlink() and f"PyInit_{name}".encode() in path.read_bytes():
            found.append(path)
    return found


def missing_libraries(module: Path) -> list[str]:
    """The shared libraries ``module`` links that the dynamic loader cannot find."""
    listed = subprocess.run(["ldd", str(module)], capture_output=True, text=True).stdout
    return re.findall(r"^\s*(\S+) => not found", listed, flags=re.MULTILINE)


def debian_package(library: str, known: Callable[[str], bool] | None = None) -> str:
    """The Debian package of a shared library, by Debian's naming (Policy 8.1): libusb-1.0.so.0 -> libusb-1.0-0.

    Some packages drop the hyphen inside the name (libglib-2.0.so.0 -> libglib2.0-0): the
    first candidate apt knows wins; where apt knows none (no package lists yet), the first.
    """
    stem, _, version = library.lower().partition(".so")
    version = version.lstrip(".").split(".")[0]
    candidates = [
        f"{name}-{version}" if name[-1:].isdigit() else f"{name}{version}" for name in (stem, stem.replace("-", ""))
    ]
    return next((name for name in candidates if (known or apt_knows)(name)), candidates[0])


def apt_knows(package: str) -> bool:
    try:
        return subprocess.run(["apt-cache", "show", "--no-all-versions", package], capture_output=True).returncode == 0
    except OSError:  # not a Debian machine
        return False


def library_problems(site_packages: Path) -> list[str]:
    problems = []
    for module in extension_modules(site_packages):
        if module.relative_to(site_packages).parts[0] in NATIVE_HALF_UNUSED:
            continue
        for library in missing_libraries(module):
            problems.append(
                f"{module.relative_to(site_packages)} needs {library}, which this machine lacks: "
                f"install Debian's {debian_package(library)} (apt-get install {debian_package(library)})"
            )
    return problems


def stage_scripts(dvc_yaml: Path) -> dict[str, Path]:
    """Each stage of ``dvc_yaml`` and the Python script its command runs."""
    stages = yaml.safe_load(dvc_yaml.read_text()).get("stages", {})
    scripts = {}
    for name, stage in stages.items():
        words = shlex.split(stage["cmd"] if isinstance(stage["cmd"], str) else " ".join(stage["cmd"]))
        script = next((word for word in words if word.endswith(".py")), None)
        if script:
            scripts[name] = dvc_yaml.parent / script
    return scripts


def imported_modules(script: Path, seen: set[Path] | None = None) -> dict[str, set[str]]:
    """Every module ``script`` imports (module -> names taken from it), following ``clothing`` modules."""
    seen = seen if seen is not None else set()
    seen.add(script)
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.setdefault(node.module, set()).update(alias.name for alias in node.names)
    for module in list(found):
        spec = importlib.util.find_spec(module) if module.split(".")[0] == "clothing" else None
        if spec and spec.origin and Path(spec.origin) not in seen:
            for inner, names in imported_modules(Path(spec.origin), seen).items():
                found.setdefault(inner, set()).update(names)
    return found


def import_problem(module: str, names: set[str]) -> str | None:
    """Why ``module`` (and its submodules among ``names``) cannot be imported, or None."""
    try:
        imported = importlib.import_module(module)
        for name in sorted(names):
            if not hasattr(imported, name):
                importlib.import_module(f"{module}.{name}")
    except Exception as error:  # any failure to import is the answer, whatever its type
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        library = re.match(r"(\S+\.so[.\d]*): cannot open shared object file", reason)
        hint = f" (install Debian's {debian_package(library[1])})" if library else ""
        return f"import {module}: {reason}{hint}"
    return None


def stage_problems(dvc_yaml: Path) -> list[str]:
    problems = []
    for stage, script in stage_scripts(dvc_yaml).items():
        if not script.is_file():
            problems.append(f"stage {stage} cannot start: {script} does not exist")
            continue
        for module, names in sorted(imported_modules(script).items()):
            if problem := import_problem(module, names):
                problems.append(f"stage {stage} cannot start: {problem}")
                break
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("python -m clothing.commands.preflight", __doc__)
    parser.add_argument("--site-packages", type=Path, default=Path(sysconfig.get_paths()["platlib"]))
    parser.add_argument("--dvc-yaml", type=Path, default=Path("dvc.yaml"))
    parser.add_argument("--libraries-only", action="store_true", help="check the extension modules, not the stages")
    args = parser.parse_args(argv)
    return exit_code(lambda: preflight(args.site_packages, None if args.libraries_only else args.dvc_yaml))


def preflight(site_packages: Path, dvc_yaml: Path | None) -> None:
    problems = library_problems(site_packages) + (stage_problems(dvc_yaml) if dvc_yaml else [])
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        raise PipelineError(f"preflight: {len(problems)} problem(s) above; no stage was run")
    checked = "extension modules find their libraries" + ("; every stage's imports import" if dvc_yaml else "")
    print(f"preflight: {site_packages}: {checked}")


if __name__ == "__main__":
    sys.exit(main())
