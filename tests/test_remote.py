"""Sharing results through a DVC remote over SSH: a real sshd on 127.0.0.1, a round trip, and its failures."""

from __future__ import annotations

import getpass
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import (
    GIT_USER,
    TINY_TRAIN,
    Archive,
    commit_all,
    free_port,
    git_repo,
    make_project,
    run,
    update_params,
)

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class Server:
    port: int
    key: Path  # the client's private key, which the server accepts
    folder: Path  # where the remote's files land

    def url(self, port: int | None = None) -> str:
        return f"ssh://{getpass.getuser()}@127.0.0.1:{port or self.port}{self.folder}"


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Debian's OpenSSH server on 127.0.0.1 and a free port, with a generated host and client key."""
    assert SSHD.is_file(), "the SSH tests need Debian's openssh-server (make test installs it as root)"
    root = tmp_path_factory.mktemp("sshd")
    host_key, client_key = keygen(root / "host_key"), keygen(root / "client_key")
    (root / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nAuthorizedKeysFile {root}/authorized_keys\n"
        f"PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        f"PidFile {root}/sshd.pid\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation folder, which a service start makes
    server = subprocess.Popen([SSHD, "-D", "-e", "-f", config], stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                break
        assert server.poll() is None, server.stderr.read()
        time.sleep(0.1)
    folder = root / "remote"
    folder.mkdir()
    yield Server(port, client_key, folder)
    server.terminate()
    server.wait(timeout=30)


def share(project: Path, env: dict, action: str) -> subprocess.CompletedProcess:
    return run(project, sys.executable, "-m", "clothing.commands.remote", action, env=env, check=False)


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, archive: Archive, sshd: Server) -> tuple[Path, dict]:
    """A tiny project run through, its remote configured (the key only in config.local), pushed."""
    root = tmp_path_factory.mktemp("shared")
    env = GIT_USER | {"HOME": str(root / "home")}
    project = make_project(root / "origin", archive)
    update_params(project, {"train": TINY_TRAIN})
    git_repo(project, env)
    update_params(project, {"quantize": {"representative_size": 8, "warmup_runs": 1, "latency_runs": 5}})
    run(project, "dvc", "repro", env=env)
    run(project, "dvc", "remote", "add", "-d", "team", sshd.url(), env=env)
    run(project, "dvc", "remote", "modify", "--local", "team", "keyfile", str(sshd.key), env=env)
    commit_all(project, env)
    result = share(project, env, "push")
    assert result.returncode == 0, result.stderr
    return project, env


def test_a_fresh_clone_pulls_the_same_data_and_models_and_predicts(
    pushed: tuple[Path, dict], sshd: Server, tmp_path: Path
) -> None:
    origin, env = pushed
    assert str(sshd.key) not in (origin / ".dvc/config").read_text()  # credentials never in git
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(origin), str(clone), env=env)
    run(clone, "dvc", "remote", "modify", "--local", "team", "keyfile", str(sshd.key), env=env)
    result = share(clone, env, "pull")
    assert result.returncode == 0, result.stderr
    for folder in ("data", "models"):
        assert tree_digest(clone / folder) == tree_digest(origin / folder), folder
    assert "up to date" in run(clone, "dvc", "status", env=env).stdout
    photo = next((clone / "data/raw/images").glob("*.jpg"))
    predicted = run(clone, sys.executable, "-m", "clothing.commands.cli", "predict", str(photo), env=env)
    assert photo.name in predicted.stdout


@pytest.fixture()
def working_copy(pushed: tuple[Path, dict], tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the pushed project, for a test that changes its config or cache."""
    origin, env = pushed
    shutil.copytree(origin, tmp_path / "project", symlinks=True)
    return tmp_path / "project", env


def test_no_remote_unreachable_or_wrong_key_is_one_clear_line_and_loses_nothing(
    working_copy: tuple[Path, dict], sshd: Server, tmp_path: Path
) -> None:
    project, env = working_copy
    before = tree_digest(project / "models") | tree_digest(project / ".dvc/cache")
    closed = free_port()
    cases = {
        "cannot connect: is the server up": ("url", sshd.url(closed)),
        "the server refused the login": ("keyfile", str(keygen(tmp_path / "stranger"))),
    }
    for reason, (option, value) in cases.items():
        run(project, "dvc", "remote", "modify", "--local", "team", option, value, env=env)
        result = share(project, env, "push")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and reason in lines[-1], result.stderr
        assert "Traceback" not in result.stderr
        run(project, "dvc", "remote", "modify", "--local", "--unset", "team", option, env=env)
    run(project, "dvc", "remote", "default", "--unset", env=env)
    result = share(project, env, "pull")
    assert result.returncode == 1 and result.stderr.startswith("error: no default DVC remote")
    assert tree_digest(project / "models") | tree_digest(project / ".dvc/cache") == before


def test_an_interrupted_push_resumes_and_the_remote_holds_only_whole_files(
    working_copy: tuple[Path, dict], sshd: Server
) -> None:
    project, env = working_copy
    (project / "big.bin").write_bytes(os.urandom(200_000_000))
    run(project, "dvc", "add", "-q", "big.bin", env=env)
    command = [sys.executable, "-m", "clothing.commands.remote", "push"]
    push = subprocess.Popen(command, cwd=project, env=os.environ | env, start_new_session=True)
    while push.poll() is None and sum(f.stat().st_size for f in sshd.folder.rglob("*") if f.is_file()) < 20_000_000:
        time.sleep(0.005)
    os.killpg(push.pid, signal.SIGKILL)  # dvc and its wrapper, as hard as a stop gets: no clean-up runs
    assert push.wait() == -signal.SIGKILL
    assert share(project, env, "push").returncode == 0
    assert "Cache and remote 'team' are in sync" in run(project, "dvc", "status", "--cloud", env=env).stdout
    stored = [f for f in (sshd.folder / "files/md5").rglob("*") if f.is_file() and not f.name.startswith(".")]
    for file in stored:  # each stored file's content hashes to its name
        assert hashlib.md5(file.read_bytes()).hexdigest() == file.parent.name + file.name.removesuffix(".dir"), file
