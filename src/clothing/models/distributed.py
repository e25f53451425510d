"""Training on several workers: TensorFlow's MultiWorkerMirroredStrategy, found through TF_CONFIG.

Every worker runs the same train stage. ``TF_CONFIG`` names the cluster (``{"cluster":
{"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``); worker 0 is the
chief, the only one that writes outputs. Each worker decodes and runs the frozen bottom of
the backbone on its own share of the photos (every ``workers``-th one), then trains on that
share: the global batch stays ``train.batch_size`` (each worker takes its part of it, and
the gradients are all-reduced), so learning rate, steps per epoch and schedule mean what
they mean on one worker.

For trying it on one machine, ``CLOTHING_LOCAL_WORKERS=N`` (what ``python -m
clothing.commands.workers N -- CMD`` sets) makes train start N-1 more workers of itself on
127.0.0.1 ports, each pinned to its own cores, and stop them all when one fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from clothing.errors import PipelineError
from clothing.system import usable_cores
from clothing.tf import keras, tf

LOCAL_WORKERS = "CLOTHING_LOCAL_WORKERS"  # N: train starts N-1 more workers on this machine
CORES_PER_WORKER = "CLOTHING_CORES_PER_WORKER"  # default: this process's cores shared out
HELPER_CORES, CHIEF_PID = "CLOTHING_HELPER_CORES", "CLOTHING_CHIEF_PID"  # set by the chief for its workers
TIMEOUT = "CLOTHING_WORKER_TIMEOUT_S"  # how long the workers may take to find each other
DEFAULT_TIMEOUT_S = 300.0
T = TypeVar("T", pd.DataFrame, np.ndarray)


@dataclass(frozen=True)
class Cluster:
    workers: tuple[str, ...]  # host:port of each worker, the chief first
    index: int  # this worker's place in ``workers``

    @property
    def size(self) -> int:
        return len(self.workers)

    @property
    def is_chief(self) -> bool:
        return self.index == 0

    def name(self, index: int) -> str:
        return f"worker {index} ({self.workers[index]})"

    def tf_config(self, index: int) -> str:
        return json.dumps({"cluster": {"worker": list(self.workers)}, "task": {"type": "worker", "index": index}})


def cluster_from_environment() -> Cluster | None:
    """The cluster TF_CONFIG names, or None when it names none (one process, as always)."""
    text = os.environ.get("TF_CONFIG", "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
        jobs, task = config["cluster"], config["task"]
        workers, index = tuple(jobs["worker"]), int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise PipelineError(
            'TF_CONFIG must be {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}'
        ) from None
    if set(jobs) != {"worker"} or task.get("type") != "worker" or not 0 <= index < len(workers):
        raise PipelineError(f"TF_CONFIG: a cluster of workers only, and an index below {len(workers)}: got {text}")
    return Cluster(workers, index) if len(workers) > 1 else None


def local_workers() -> int:
    """How many workers CLOTHING_LOCAL_WORKERS asks for on this machine (1 when unset)."""
    value = os.environ.get(LOCAL_WORKERS, "1")
    if not value.isdigit() or int(value) < 1:
        raise PipelineError(f"{LOCAL_WORKERS}={value}: a number of workers, 1 or more")
    if int(value) > 1 and os.environ.get("TF_CONFIG"):
        raise PipelineError(f"set TF_CONFIG (workers on several machines) or {LOCAL_WORKERS}, not both")
    return int(value)


def cores_per_worker(workers: int, asked: int | None = None) -> int:
    """Cores each of ``workers`` local workers gets: ``asked``, else CLOTHING_CORES_PER_WORKER, else a fair
    share of the usable cores; one clear error unless that many workers fit on the cores this process may use."""
    if workers < 1:
        raise PipelineError(f"{workers} workers: 1 or more")
    fair_share = str(max(1, usable_cores() // workers))
    value = str(asked) if asked is not None else os.environ.get(CORES_PER_WORKER, fair_share)
    if not value.isdigit() or int(value) < 1:
        source = f"{CORES_PER_WORKER}={value}" if asked is None else f"{value} cores per worker"
        raise PipelineError(f"{source}: a number of cores, 1 or more")
    available = usable_cores()  # the CPU affinity, capped by a container's CPU quota
    each = int(value)
    if workers * each > available:
        raise PipelineError(f"{workers} workers x {each} cores need {workers * each}; this process may use {available}")
    return each


def start_local_workers(script: str) -> tuple[Cluster | None, LocalWorkers | None]:
    """With CLOTHING_LOCAL_WORKERS=N, start workers 1..N-1 running ``script``; this process becomes worker 0.

    Each worker is pinned to its own cores before TensorFlow starts its thread pools, so N
    workers on N cores compete for nothing. Returns (TF_CONFIG's cluster, None) without it.
    """
    if HELPER_CORES in os.environ:  # a worker a local chief started
        _pin_and_follow_the_chief()
    n = local_workers()
    if n == 1 and LOCAL_WORKERS not in os.environ:
        return cluster_from_environment(), None
    each = cores_per_worker(n)
    available = sorted(os.sched_getaffinity(0))
    cores = [set(available[i * each : (i + 1) * each]) for i in range(n)]
    os.sched_setaffinity(0, cores[0])
    if n == 1:
        return None, None
    cluster = Cluster(tuple(f"127.0.0.1:{port}" for port in free_ports(n)), 0)
    os.environ["TF_CONFIG"] = cluster.tf_config(0)
    return cluster, LocalWorkers(cluster, script, cores)


def _pin_and_follow_the_chief() -> None:
    """In a worker a local chief started: its cores, and an end with the chief's (not a wait for its peers)."""
    os.sched_setaffinity(0, {int(core) for core in os.environ.pop(HELPER_CORES).split(",")})
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: SIGKILL when the chief ends
    if os.getppid() != int(os.environ.pop(CHIEF_PID)):
        os._exit(1)  # the chief ended before the line above took effect


def free_ports(n: int) -> list[int]:
    listeners = [socket.socket() for _ in range(n)]
    try:
        for listener in listeners:
            listener.bind(("127.0.0.1", 0))
        return [listener.getsockname()[1] for listener in listeners]
    finally:
        for listener in listeners:
            listener.close()


class LocalWorkers:
    """Workers 1..N-1 of a local cluster: started, watched, and stopped with this process."""

    def __init__(self, cluster: Cluster, script: str, cores: list[set[int]]) -> None:
        self.cluster, self.logs = cluster, Path(tempfile.mkdtemp(prefix="clothing-workers-"))
        self.processes = {i: self._start(i, script, cores[i]) for i in range(1, cluster.size)}
        for i, process in self.processes.items():
            print(f"train: {cluster.name(i)} started, pid {process.pid}, log {self.log(i)}")
        self.finished = threading.Event()

    def _start(self, index: int, script: str, cores: set[int]) -> subprocess.Popen:
        env = os.environ | {
            "TF_CONFIG": self.cluster.tf_config(index),
            HELPER_CORES: ",".join(map(str, sorted(cores))),
            CHIEF_PID: str(os.getpid()),
        }
        env.pop(LOCAL_WORKERS, None)
        with open(self.log(index), "w") as log:
            return subprocess.Popen([sys.executable, script], env=env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, index: int) -> Path:
        return self.logs / f"worker{index}.log"

    def watch(self) -> None:
        """In the background: the moment a worker fails, stop the others and end this process with one line."""

        def watcher() -> None:
            while not self.finished.wait(0.5):
                for i, process in self.processes.items():
                    if process.poll() not in (None, 0):
                        print(f"error: train: {self.failure(i)}", file=sys.stderr, flush=True)
                        self.stop()
                        os._exit(1)  # the main thread may be blocked in a collective that never returns

        threading.Thread(target=watcher, daemon=True).start()

    def failure(self, index: int) -> str:
        code = self.processes[index].returncode
        how = f"was killed by signal {-code}" if code < 0 else f"failed (exit code {code})"
        log = self.log(index)
        said = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("error:")]
        return f"{self.cluster.name(index)} {how}{f' ({said[-1]})' if said else ''}; no model written; its log: {log}"

    def stop_watching(self) -> None:
        """Training is over: from here, a worker's end is not the run's (the chief may be writing)."""
        self.finished.set()

    def stop(self, grace_s: float = 0) -> None:
        """Stop the workers: at once, or (after a run that succeeded) once they had ``grace_s`` to finish."""
        self.finished.set()
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace_s)
            # SIGKILL: TensorFlow's preemption handler catches SIGTERM and carries on.
            if process.poll() is None:
                process.kill()
            process.wait()
        if all(process.returncode == 0 for process in self.processes.values()):
            shutil.rmtree(self.logs, ignore_errors=True)


def join(cluster: Cluster, local: LocalWorkers | None = None) -> tf.distribute.Strategy:
    """The strategy, once every worker has joined; past the deadline, one line naming the missing ones.

    Must run before TensorFlow executes anything: collective ops are configured at start-up.
    The watchdog also ends the wait at once when a local worker ends before joining.
    """
    timeout = os.environ.get(TIMEOUT, str(DEFAULT_TIMEOUT_S))
    try:
        if float(timeout) <= 0:
            raise ValueError
    except ValueError:
        raise PipelineError(f"{TIMEOUT}={timeout}: a number of seconds above 0") from None
    args = ["--pid", str(os.getpid()), "--timeout", timeout, "--index", str(cluster.index), *cluster.workers]
    for i, process in local.processes.items() if local else ():
        args += ["--local", str(process.pid), str(i), str(local.log(i))]
    watchdog = subprocess.Popen([sys.executable, "-m", "clothing.models.rendezvous", *args], stdin=subprocess.PIPE)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    watchdog.communicate(b"joined\n")
    return strategy


def lost_worker(cluster: Cluster, error: Exception) -> PipelineError:
    """A collective failed, most often because a peer stopped answering: one line naming it."""
    tasks = {int(t) for t in re.findall(r"/job:worker/(?:replica:\d+/)?task:(\d+)", str(error))} - {cluster.index}
    if tasks:
        who = ", ".join(cluster.name(i) for i in sorted(tasks))
        return PipelineError(f"train: {who} stopped answering ({type(error).__name__}); no model written")
    first = " ".join(str(error).split())[:200]
    return PipelineError(f"train: the workers failed ({type(error).__name__}: {first}); no model written")


def barrier(strategy: tf.distribute.Strategy) -> None:
    """Wait until every worker gets here (a sum across workers)."""
    ones = tf.function(lambda: strategy.run(lambda: tf.constant(1.0)))()  # in a graph: no eager-mode warning
    strategy.reduce(tf.distribute.ReduceOp.SUM, ones, axis=None)


def share(rows: T, cluster: Cluster) -> T:
    """This worker's rows of a table or array: every ``size``-th one, from its index."""
    if len(rows) < cluster.size:
        raise PipelineError(f"train: {len(rows)} photos in a split cannot be shared out over {cluster.size} workers")
    mine = np.arange(cluster.index, len(rows), cluster.size)
    return rows.iloc[mine] if isinstance(rows, pd.DataFrame) else rows[mine]


def per_worker_batch(batch_size: int, cluster: Cluster) -> int:
    if batch_size % cluster.size:
        raise PipelineError(f"train.batch_size {batch_size} does not split evenly over {cluster.size} workers")
    return batch_size // cluster.size


@dataclass
class WorkerFeed:
    """This worker's part of each global batch, and of validation, as ``model.fit`` takes them.

    Epoch ``e`` serves view ``e mod views`` of this worker's photos, reshuffled, in a number
    of steps every worker shares (a worker with a photo fewer wraps round to its first):
    a worker that ran out of batches first would leave the others waiting in a collective.
    Validation rows added to fill the last batch weigh 0: accuracy is exact; the loss, which
    Keras divides by the batch's rows, reads a little low in that batch.
    """

    views: list[np.ndarray]  # this worker's photos' cached features, one array per augmented view
    targets: np.ndarray  # their targets
    weights: np.ndarray  # per photo: its class weight, or 1
    validation: tuple[np.ndarray, np.ndarray]  # this worker's validation features and targets
    photos: tuple[int, int]  # training and validation photos, all workers together
    batch: int  # this worker's part of the global batch
    cluster: Cluster
    seed: int

    def __len__(self) -> int:
        return steps_for(self.photos[0], self.cluster, self.batch)

    def fit_inputs(self, first_epoch: int) -> dict:
        features, targets = self.validation
        return {
            "x": self._creator(self._training(first_epoch), self.views[0], self.targets),
            "steps_per_epoch": len(self),
            "validation_data": self._creator(self._validation(), features, targets),
            "validation_steps": steps_for(self.photos[1], self.cluster, self.batch),
        }

    def _training(self, first_epoch: int) -> Callable[[], Iterator]:
        def batches() -> Iterator:
            for epoch in itertools.count(first_epoch):
                shuffled = np.random.default_rng([self.seed, self.cluster.index, epoch]).permutation(len(self.weights))
                order = np.resize(shuffled, len(self) * self.batch)
                view = epoch % len(self.views)
                for rows in order.reshape(len(self), self.batch):
                    yield self.views[view][rows], self.targets[rows], self.weights[rows]

        return batches

    def _validation(self) -> Callable[[], Iterator]:
        features, targets = self.validation
        size = steps_for(self.photos[1], self.cluster, self.batch) * self.batch
        rows, weights = np.resize(np.arange(len(targets)), size), (np.arange(size) < len(targets)).astype(np.float32)

        def batches() -> Iterator:
            for part in np.split(np.arange(size), size // self.batch):
                yield features[rows[part]], targets[rows[part]], weights[part]

        return batches

    @staticmethod
    def _creator(batches: Callable[[], Iterator], features: np.ndarray, targets: np.ndarray):
        signature = (
            tf.TensorSpec((None, *features.shape[1:]), tf.float32),
            tf.TensorSpec((None, *targets.shape[1:]), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        )
        dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
        return keras.utils.experimental.DatasetCreator(lambda context: dataset)


def steps_for(photos: int, cluster: Cluster, batch: int) -> int:
    """Steps that take the largest worker's share of ``photos`` once: every worker runs as many."""
    largest = -(-photos // cluster.size)
    return max(1, -(-largest // batch))
