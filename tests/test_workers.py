"""train on several workers (TF_CONFIG, or CLOTHING_LOCAL_WORKERS on one machine), on the tiny dataset."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAIN, error_line, free_port, run, update_params

from clothing.errors import PipelineError
from clothing.models.distributed import (
    Cluster,
    WorkerFeed,
    cluster_from_environment,
    lost_worker,
    per_worker_batch,
    share,
)

DEADLINE_S = 600  # a wait that cannot end on its own ends here; no test expects to come near it
LONG_TRAIN = {"fine_tune": TINY_TRAIN["fine_tune"] | {"epochs": 2000}}  # still training when a worker is killed


@pytest.fixture()
def tiny(project: Path) -> Path:
    update_params(project, {"train": TINY_TRAIN})
    run(project, "dvc", "init", "--no-scm", "-q")
    run(project, "dvc", "repro", "weights", "teach")  # train's inputs; the tests start train by hand
    return project


def environment(**variables: str) -> dict[str, str]:
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return env | {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"} | variables


def tf_config(workers: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def nothing_left_running() -> Iterator[None]:
    """A test that fails half-way must not leave a 2000-epoch training on the cores."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()  # the workers die with it (their parent-death signal)
        process.wait()


def start_train(project: Path, log: str, *launcher: str, **variables: str) -> subprocess.Popen:
    """The train stage (through ``launcher``, if given), its output in ``log`` and ``log``.err."""
    out, err = (open(project / name, "w") for name in (log, f"{log}.err"))  # noqa: SIM115 (closed with the process)
    command = [*launcher, sys.executable, "stages/train.py"]
    STARTED.append(subprocess.Popen(command, cwd=project, env=environment(**variables), stdout=out, stderr=err))
    return STARTED[-1]


def wait_for(path: Path, pattern: str, process: subprocess.Popen) -> re.Match:
    """The first match of ``pattern`` in the file ``path``, once the process has printed it."""
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        if found := re.search(pattern, path.read_text()):
            return found
        assert process.poll() is None, f"ended before printing {pattern!r}: {path.read_text()[-2000:]}"
        time.sleep(0.5)
    raise AssertionError(f"no {pattern!r} in {path} within {DEADLINE_S} s")


def ended(process: subprocess.Popen, project: Path, log: str) -> subprocess.CompletedProcess:
    process.wait(DEADLINE_S)
    read = (project / log).read_text(), (project / f"{log}.err").read_text()
    return subprocess.CompletedProcess(process.args, process.returncode, *read)


def test_two_local_workers_train_a_model_the_chief_writes_and_evaluate_reads(tiny: Path) -> None:
    launcher = [sys.executable, "-m", "clothing.commands.workers", "2", "--cores-per-worker", "1", "--"]
    result = run(tiny, *launcher, "dvc", "repro", "evaluate")
    assert re.search(r"worker 1 \(127\.0\.0\.1:\d+\) started", result.stdout)
    timing = json.loads((tiny / "metrics/timing/train.json").read_text())
    assert timing["workers"] == 2 and timing["cpu"]["usable_cores"] == 1  # each pinned to its own core
    # The classes differ by colour; each worker saw half the photos, and together they learned all three.
    assert json.loads((tiny / "metrics/train.json").read_text())["val_accuracy"] == 1.0
    assert json.loads((tiny / "metrics/eval.json").read_text())["accuracy"] == 1.0
    assert run(tiny, "dvc", "status", "train", "evaluate").stdout.strip().endswith("up to date.")


def test_a_worker_killed_mid_training_ends_the_run_naming_it_and_a_rerun_starts_clean(tiny: Path) -> None:
    update_params(tiny, {"train": LONG_TRAIN})
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    chief = start_train(tiny, "chief.log", TF_CONFIG=tf_config(workers, 0))
    other = start_train(tiny, "other.log", TF_CONFIG=tf_config(workers, 1))
    wait_for(tiny / "chief.log", r"Epoch 3/", chief)
    other.send_signal(signal.SIGKILL)
    assert error_line(ended(chief, tiny, "chief.log")) == (
        f"error: train: worker 1 ({workers[1]}) stopped answering (UnavailableError); no model written"
    )
    assert not (tiny / "models/model.keras").exists()

    update_params(tiny, {"train": TINY_TRAIN})
    run(tiny, "dvc", "repro", "train")
    assert json.loads((tiny / "metrics/timing/train.json").read_text())["workers"] == 1


def test_a_local_worker_killed_mid_training_ends_the_run_naming_it(tiny: Path) -> None:
    update_params(tiny, {"train": LONG_TRAIN})
    launcher = [sys.executable, "-m", "clothing.commands.workers", "2", "--"]
    chief = start_train(tiny, "chief.log", *launcher)
    started = wait_for(tiny / "chief.log", r"worker 1 \((127\.0\.0\.1:\d+)\) started, pid (\d+)", chief)
    wait_for(tiny / "chief.log", r"Epoch 3/", chief)
    os.kill(int(started[2]), signal.SIGKILL)
    line = error_line(ended(chief, tiny, "chief.log"))
    # Whichever notices first: the chief's watch on its workers, or TensorFlow's heartbeats.
    how = r"(was killed by signal 9|stopped answering \(UnavailableError\)); no model written"
    assert re.match(rf"error: train: worker 1 \({re.escape(started[1])}\) {how}", line), line
    assert not (tiny / "models/model.keras").exists()


def test_a_worker_that_never_joins_is_named_after_the_timeout(tiny: Path) -> None:
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]  # nothing ever listens on the second
    alone = start_train(tiny, "chief.log", TF_CONFIG=tf_config(workers, 0), CLOTHING_WORKER_TIMEOUT_S="5")
    line = error_line(ended(alone, tiny, "chief.log"))
    assert line == f"error: train: worker 1 ({workers[1]}) did not join within 5 s; no model written"
    assert not (tiny / "models/model.keras").exists()


def test_prune_cluster_and_distill_are_refused_on_several_workers(tiny: Path) -> None:
    update_params(tiny, {"train": {"prune": {"sparsity": 0.5, "epochs": 1, "lr": 0.001}}})
    launcher = [sys.executable, "-m", "clothing.commands.workers", "2", "--"]
    result = ended(start_train(tiny, "chief.log", *launcher), tiny, "chief.log")
    assert error_line(result) == "error: train: prune, cluster and distill run on one worker only (no TF_CONFIG)"


@pytest.mark.parametrize(
    ("tf_config_text", "expected"),
    [
        ("", None),
        (tf_config(["a:1"], 0), None),  # a cluster of one is one process, as without TF_CONFIG
        (tf_config(["a:1", "b:2"], 1), Cluster(("a:1", "b:2"), 1)),
    ],
)
def test_tf_config_names_the_cluster(monkeypatch: pytest.MonkeyPatch, tf_config_text: str, expected: object) -> None:
    monkeypatch.setenv("TF_CONFIG", tf_config_text)
    assert cluster_from_environment() == expected


@pytest.mark.parametrize(
    "tf_config_text",
    [
        "{not json",
        json.dumps({"cluster": {"worker": ["a:1", "b:2"]}}),
        tf_config(["a:1", "b:2"], 2),
        json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}),
    ],
)
def test_a_bad_tf_config_is_one_line(monkeypatch: pytest.MonkeyPatch, tf_config_text: str) -> None:
    monkeypatch.setenv("TF_CONFIG", tf_config_text)
    with pytest.raises(PipelineError, match="TF_CONFIG"):
        cluster_from_environment()


def feeds(photos: int, val_photos: int, workers: int, batch: int) -> list[WorkerFeed]:
    """Each worker's feed over photos numbered 0..photos-1 (the number is the photo's one feature)."""
    made = []
    for index in range(workers):
        cluster = Cluster(tuple(f"h:{i}" for i in range(workers)), index)
        mine, val = np.arange(index, photos, workers), np.arange(index, val_photos, workers)
        views = [mine[:, None].astype(np.float32) + 1000 * view for view in range(2)]  # view 1: +1000
        targets = np.eye(2, dtype=np.float32)[mine % 2]
        validation = (val[:, None].astype(np.float32), np.eye(2, dtype=np.float32)[val % 2])
        weights = np.ones(len(mine), np.float32)
        made.append(WorkerFeed(views, targets, weights, validation, (photos, val_photos), batch, cluster, seed=0))
    return made


def test_the_workers_feeds_cover_every_photo_each_epoch_in_the_same_number_of_steps() -> None:
    photos, workers = 41, 2  # worker 0 has 21 photos, worker 1 has 20
    per_epoch = []
    for feed in feeds(photos, 9, workers, batch=4):
        assert len(feed) == 6  # ceil(21 / 4), on both: a worker short of batches would stall the other
        batches = feed._training(first_epoch=0)()
        epochs = [[next(batches) for _ in range(len(feed))] for _ in range(2)]
        per_epoch.append([np.concatenate([b[0][:, 0] for b in epoch]) for epoch in epochs])
    for epoch in range(2):
        seen = np.concatenate([per_epoch[w][epoch] for w in range(workers)]) - 1000 * epoch  # epoch e: view e
        assert set(seen.astype(int)) == set(range(photos))  # every photo, from its own worker
    assert not np.array_equal(per_epoch[0][0], per_epoch[0][1] - 1000)  # reshuffled each epoch


def test_validation_padding_weighs_nothing() -> None:
    for feed in feeds(8, 9, 2, batch=4):
        batches = list(feed._validation()())
        assert len(batches) == 2  # ceil(5 / 4) on both workers
        kept = np.concatenate([features[weights == 1, 0] for features, _, weights in batches])
        assert sorted(kept.astype(int)) == list(range(feed.cluster.index, 9, 2))


def test_the_global_batch_must_split_evenly() -> None:
    assert per_worker_batch(32, Cluster(("a:1", "b:2"), 0)) == 16
    with pytest.raises(PipelineError, match=r"train\.batch_size 30 does not split evenly over 4 workers"):
        per_worker_batch(30, Cluster(("a:1", "b:2", "c:3", "d:4"), 0))


def test_a_lost_worker_is_named_from_tensorflows_error() -> None:
    error = RuntimeError("Collective ops is aborted by: /job:worker/replica:0/task:2 is down")
    message = str(lost_worker(Cluster(("a:1", "b:2", "c:3"), 0), error))
    assert message == "train: worker 2 (c:3) stopped answering (RuntimeError); no model written"


def test_the_launcher_needs_a_command_and_the_cores(tiny: Path) -> None:
    launcher = [sys.executable, "-m", "clothing.commands.workers"]
    no_command = run(tiny, *launcher, "2", check=False)
    assert error_line(no_command) == "error: workers: give the command after --, e.g. -- dvc repro train"
    too_many = run(tiny, *launcher, "64", "--cores-per-worker", "4", "--", "true", check=False)
    assert re.fullmatch(r"error: 64 workers x 4 cores need 256; this process may use \d+", error_line(too_many))


def test_a_share_needs_a_photo_for_every_worker() -> None:
    assert list(share(np.arange(5), Cluster(("a:1", "b:2"), 1))) == [1, 3]
    with pytest.raises(PipelineError, match="2 photos in a split cannot be shared out over 3 workers"):
        share(np.arange(2), Cluster(("a:1", "b:2", "c:3"), 0))


def test_a_local_worker_that_ends_before_joining_ends_the_wait_at_once(tmp_path: Path) -> None:
    waiting = subprocess.Popen(["sleep", str(DEADLINE_S)])  # stands for the chief, stuck waiting to join
    STARTED.append(waiting)
    gone = subprocess.Popen(["true"])
    gone.wait()
    args = ["--pid", str(waiting.pid), "--timeout", str(DEADLINE_S), "--index", "0", "a:1", "b:2"]
    watchdog = subprocess.Popen(
        [sys.executable, "-m", "clothing.models.rendezvous", *args, "--local", str(gone.pid), "1", "w1.log"],
        stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog.wait(DEADLINE_S)  # its stdin stays open: the chief never said "joined"
    said = watchdog.stderr.read().strip()
    assert said == "error: train: worker 1 (b:2) ended before joining; no model written; its log: w1.log"
    assert waiting.wait(DEADLINE_S) == -signal.SIGKILL
