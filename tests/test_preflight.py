"""preflight: a missing system library or an import a stage cannot make is one line, before any stage runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from clothing.commands.preflight import debian_package, library_problems

ABSENT = "libclothingabsent.so.1"


@pytest.fixture(scope="module")
def broken_extension(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """site-packages/brokenext.so: an extension module linking a library that is gone, as libusb was."""
    build = tmp_path_factory.mktemp("build")
    (build / "absent.c").write_text("int clothing_absent(void) { return 1; }\n")
    (build / "brokenext.c").write_text(
        "int clothing_absent(void);\nvoid *PyInit_brokenext(void) { clothing_absent(); return 0; }\n"
    )
    gcc = ["gcc", "-shared", "-fPIC"]
    subprocess.run([*gcc, "-Wl,-soname," + ABSENT, "-o", build / ABSENT, build / "absent.c"], check=True)
    site = tmp_path_factory.mktemp("site-packages")
    subprocess.run([*gcc, "-o", site / "brokenext.so", build / "brokenext.c", build / ABSENT], check=True)
    (build / ABSENT).unlink()
    return site


def preflight(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clothing.commands.preflight", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)


def test_an_extension_linking_a_missing_library_is_named_with_its_debian_package(broken_extension: Path) -> None:
    assert library_problems(broken_extension) == [
        f"brokenext.so needs {ABSENT}, which this machine lacks: "
        "install Debian's libclothingabsent1 (apt-get install libclothingabsent1)"
    ]
    result = preflight("--libraries-only", "--site-packages", broken_extension)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0].startswith(f"error: brokenext.so needs {ABSENT}")
    assert "Traceback" not in result.stderr


def test_a_library_a_vendored_folder_holds_is_not_an_extension_module(broken_extension: Path, tmp_path: Path) -> None:
    """Wheels vendor libraries (h5py.libs/) that the module loading them finds; only modules are checked."""
    vendored = tmp_path / "site-packages/pkg.libs"
    vendored.mkdir(parents=True)
    (vendored / "libhelper.so").write_bytes(
        (broken_extension / "brokenext.so").read_bytes().replace(b"PyInit_", b"NoInit_")
    )
    assert library_problems(tmp_path / "site-packages") == []


DEBIAN = {"libusb-1.0-0", "libgomp1", "libstdc++6", "libgl1", "libglib2.0-0"}  # real package names


@pytest.mark.parametrize(
    ("library", "package"),
    [
        ("libusb-1.0.so.0", "libusb-1.0-0"),
        ("libgomp.so.1", "libgomp1"),
        ("libstdc++.so.6", "libstdc++6"),
        ("libGL.so.1", "libgl1"),  # package names are lower case
        ("libglib-2.0.so.0", "libglib2.0-0"),  # Debian dropped the hyphen here
    ],
)
def test_debian_names_a_library_package_after_its_soname(library: str, package: str) -> None:
    assert debian_package(library, known=DEBIAN.__contains__) == package


def test_a_stage_whose_late_import_fails_stops_the_pipeline_before_it_starts(
    broken_extension: Path, tmp_path: Path
) -> None:
    """The import sits inside a function, as tflite-support's writer did: met only when the stage got there."""
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages/first.py").write_text("import json\n")
    (tmp_path / "stages/late.py").write_text("def main():\n    import brokenext\n\n\nmain()\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  first:\n    cmd: python stages/first.py\n  late:\n    cmd: python stages/late.py\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(broken_extension)}
    result = preflight("--dvc-yaml", tmp_path / "dvc.yaml", "--site-packages", tmp_path / "stages", env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"error: stage late cannot start: import brokenext: {ABSENT}: cannot open shared object file: "
        "No such file or directory (install Debian's libclothingabsent1)"
    )
    assert len(result.stderr.splitlines()) == 2  # that line and the summary: stage first imports


def test_every_stage_of_the_pipeline_can_start_here() -> None:
    result = preflight()
    assert result.returncode == 0, result.stderr
