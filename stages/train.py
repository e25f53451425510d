"""train: data/split/{train,val}.csv, models/weights/, data/teacher/ -> models/model.keras (+ .json), metrics/train*.

Transfer learning on a CPU budget. The backbone is cut in two: the frozen bottom runs
once per training image and augmented view (``train.augment.views``), and only the top
(``train.fine_tune.unfreeze`` of the backbone's layers) plus the new head train, epoch
after epoch, on those cached features. Two phases: the head alone, then head and top
(with random weights there is nothing to protect, and both phases train everything).
The weights kept are those of the epoch with the best validation accuracy; the test
split is not read here. ``train.fine_tune.keep_filters`` below 1 first removes that part's
weakest filters (clothing.models.thinning). With ``train.prune.sparsity`` or
``train.cluster.clusters`` a third phase prunes or clusters that part's weights
(clothing.models.pruning, clothing.models.clustering), and those weights are saved. With
``train.distill.teachers`` the loss also follows the teach stage's answers
(clothing.models.distillation). When ``TF_CONFIG`` names a cluster (or
``CLOTHING_LOCAL_WORKERS`` asks for one on this machine), this is one of several workers,
each with its share of the photos, and only the chief writes (clothing.models.distributed).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from dvclive import Live
from pydantic import Field, NonNegativeInt, PositiveFloat, model_validator
from tqdm import tqdm

from clothing.data.augment import AugmentParams, augmented, view_numbers
from clothing.data.images import load_images
from clothing.errors import PipelineError, run_stage
from clothing.files import read_table, write_json
from clothing.models.backbones import BACKBONES, BackboneName
from clothing.models.classifier import ModelInfo, class_indices, save_classifier
from clothing.models.clustering import clusterable_copy, clustered_layers, distinct_values, stripped
from clothing.models.distillation import DistillParams, distillation_loss, label_accuracy, load_answers, made_for
from clothing.models.distributed import (
    Cluster,
    WorkerFeed,
    barrier,
    join,
    lost_worker,
    per_worker_batch,
    share,
    start_local_workers,
)
from clothing.models.networks import build_backbone, split_at_fraction
from clothing.models.pruning import copy_weights, prunable_copy, pruning_step, sparsity_of
from clothing.models.thinning import thinned
from clothing.params import Section, load_section
from clothing.system import cpu_description, peak_memory_mb
from clothing.tf import keras, tf

SPLIT = Path("data/split")
WEIGHTS = Path("models/weights")
MODEL = Path("models/model.keras")
CURVES = Path("metrics/train")
TIMING = Path("metrics/timing/train.json")
Rate = Annotated[float, Field(ge=0, lt=1)]


class PhaseParams(Section):
    epochs: NonNegativeInt
    lr: PositiveFloat


class FineTuneParams(PhaseParams):
    unfreeze: Annotated[float, Field(ge=0, le=1)]  # fraction of the backbone's layers, from the top
    schedule: Literal["cosine", "constant"]
    keep_filters: Annotated[float, Field(gt=0, le=1)]  # of each thinnable convolution in that part


class PruneParams(Section):
    sparsity: Rate  # 0: no pruning; else the share of prunable weights zeroed
    epochs: NonNegativeInt
    lr: PositiveFloat

    @model_validator(mode="after")
    def _epochs_to_prune_in(self) -> PruneParams:
        if self.sparsity > 0 and self.epochs == 0:
            raise ValueError("prune.sparsity needs prune.epochs of at least 1")
        return self


class ClusterParams(Section):
    clusters: Annotated[int, Field(ge=0, le=256)]  # 0: no clustering; else distinct values per kernel
    epochs: NonNegativeInt
    lr: PositiveFloat

    @model_validator(mode="after")
    def _epochs_to_cluster_in(self) -> ClusterParams:
        if self.clusters == 1 or (self.clusters > 0 and self.epochs == 0):
            raise ValueError("cluster.clusters needs 2 or more clusters and cluster.epochs of at least 1")
        return self


class TrainParams(Section):
    backbone: BackboneName
    weights: str | None  # resolved by the weights stage
    image_size: Annotated[int, Field(ge=32, le=1024)]
    batch_size: Annotated[int, Field(ge=1)]
    seed: NonNegativeInt  # every random choice of training derives from it
    dropout: Rate
    label_smoothing: Rate
    class_weighting: bool
    augment: AugmentParams
    head: PhaseParams
    fine_tune: FineTuneParams
    prune: PruneParams
    cluster: ClusterParams
    distill: DistillParams

    @model_validator(mode="after")
    def _one_compression(self) -> TrainParams:
        if self.prune.sparsity > 0 and self.cluster.clusters > 0:
            raise ValueError("prune.sparsity and cluster.clusters: set one of them, not both")
        return self


def main() -> None:
    workers, local = start_local_workers(__file__)
    succeeded = False
    try:
        # Before TensorFlow runs anything: the workers' collective ops are set up at start-up.
        strategy = join(workers, local) if workers else None
        if local:
            local.watch()
        train_model(workers, strategy, before_writing=local.stop_watching if local else None)
        succeeded = True
    except tf.errors.OpError as error:
        if workers is None:
            raise
        raise lost_worker(workers, error) from None
    finally:
        if local:
            local.stop(grace_s=60 if succeeded else 0)


def train_model(
    workers: Cluster | None, strategy: tf.distribute.Strategy | None, before_writing: Callable[[], None] | None = None
) -> None:
    p = load_section("train", TrainParams)
    keras.utils.set_random_seed(p.seed)
    tf.config.experimental.enable_op_determinism()
    wall: dict[str, float] = {}
    chief = workers is None or workers.is_chief
    if workers and (p.prune.sparsity > 0 or p.cluster.clusters > 0 or p.distill.teachers):
        # Distillation too: a worker's augmented views of its share are not those the teachers scored.
        raise PipelineError("train: prune, cluster and distill run on one worker only (no TF_CONFIG)")

    train, val = (read_table(SPLIT / f"{name}.csv") for name in ("train", "val"))
    classes = sorted(train["label"].unique())
    y_train = class_indices(train["label"], classes, str(SPLIT / "train.csv"))
    y_val = class_indices(val["label"], classes, f"{SPLIT / 'val.csv'} (classes are those of train.csv)")
    teacher = teacher_answers(p, train["image"].tolist(), classes)  # checked before minutes of work
    per_class = class_weights(y_train, len(classes)) if p.class_weighting else None
    photos = (len(train), len(val))  # all workers' together
    if workers:  # from here on, this worker's share of the photos
        train, y_train = share(train, workers), share(y_train, workers)
        val, y_val = share(val, workers), share(y_val, workers)

    weights = starting_weights(p.backbone)
    backbone = build_backbone(p.backbone, p.image_size, weights and WEIGHTS / weights["file"])
    with strategy.scope() if strategy else nullcontext():  # what trains is mirrored across the workers
        # Random weights are not worth protecting: train the whole network.
        frozen, top = split_at_fraction(backbone, 1.0 if weights is None else p.fine_tune.unfreeze)
        top = thinned(top, p.fine_tune.keep_filters)
    preprocess = BACKBONES[p.backbone].preprocess

    with timed(wall, "decode"):
        train_images = load_images(train["path"], p.image_size, desc="decode train")
        val_images = load_images(val["path"], p.image_size, desc="decode val")
    with timed(wall, "frozen_features"):
        views = [
            frozen_features(frozen, preprocess(augmented(train_images, v, p.augment, p.seed)))
            for v in view_numbers(p.augment)
        ]
        val_features = frozen_features(frozen, preprocess(val_images.astype(np.float32)))
        if strategy:
            barrier(strategy)  # the slowest worker's share sets the pace

    with strategy.scope() if strategy else nullcontext():
        head = classifier_head(top, len(classes), p.dropout)
    data = CachedViews(views, y_train, len(classes), p.batch_size, p.seed, per_class, teacher)
    validation = (val_features, data.targets_of(y_val))
    if workers:
        data = worker_feed(data, validation, photos, workers, p)
    objective = Objective.of(p, len(classes))
    best = KeepBest()
    with Curves(str(CURVES), dvcyaml=None, save_dvc_exp=False) if chief else nullcontext() as live:
        callbacks = [best, live_callback(live)] if chief else [best]
        with timed(wall, "head"):
            # Random weights have nothing to protect, and a head fitted to random features
            # is thrown off when batch norm starts to learn: all of it trains from the start.
            top.trainable = weights is None
            fit(head, data, validation, p.head.epochs, p.head.lr, "constant", objective, callbacks)
        with timed(wall, "fine_tune"):
            unfreeze(top, pretrained=weights is not None)
            phase = p.fine_tune
            fit(head, data, validation, phase.epochs, phase.lr, phase.schedule, objective, callbacks,
                initial_epoch=p.head.epochs)  # fmt: skip
        if best.weights is None:
            raise PipelineError("train: no epoch ran (train.head.epochs + train.fine_tune.epochs is 0)")
        # An uncompiled copy: the saved model carries no optimizer state, which inference never reads.
        trained_head = keras.models.clone_model(head)
        trained_head.set_weights(best.weights)
        compressed = {}
        if p.prune.sparsity > 0:
            with timed(wall, "prune"):
                compressed["pruned"] = prune(trained_head, data, validation, p, objective, live)
        if p.cluster.clusters > 0:
            with timed(wall, "cluster"):
                compressed["clustered"] = cluster(trained_head, data, validation, p, objective, live)

    if before_writing:
        before_writing()
    if not chief:
        return  # the chief writes the outputs; the others write nothing
    model = keras.Model(frozen.input, trained_head(frozen.output), name=f"clothing_{p.backbone}")
    save_classifier(model, ModelInfo(classes, p.backbone, p.image_size), MODEL)
    write_json("metrics/train.json", {
        "best_epoch": best.epoch + 1,
        "val_accuracy": best.logs["val_accuracy"],
        "val_loss": best.logs["val_loss"],
        "train_accuracy": best.logs["accuracy"],
        "epochs_run": best.epochs_run,
        "trainable_layers": len(top.layers) - 1,
        "frozen_layers": len(frozen.layers) - 1,
        "params": model.count_params(),
        "weights": weights,
    } | compressed)  # fmt: skip
    # Timings vary from run to run: apart from the metrics, so a reproduction diffs clean.
    wall_seconds = {k: round(v, 1) for k, v in wall.items()} | {"total": round(sum(wall.values()), 1)}
    # The chief's memory and cores; each worker's are alike.
    workers_count = workers.size if workers else 1
    write_json(TIMING, {
        "cpu": cpu_description(), "workers": workers_count, "wall_seconds": wall_seconds,
        "peak_memory_mb": peak_memory_mb(),
    })  # fmt: skip
    print(f"train: best epoch {best.epoch + 1}, val accuracy {best.logs['val_accuracy']:.4f}")


def starting_weights(backbone: str) -> dict[str, str] | None:
    """The weights stage's file and its SHA-256, or None for random weights."""
    record = json.loads((WEIGHTS / "weights.json").read_text())
    if record["backbone"] != backbone:
        raise PipelineError(f"{WEIGHTS}: weights for {record['backbone']}, not {backbone}: run the weights stage")
    return None if record["file"] is None else {"file": record["file"], "sha256": record["sha256"]}


@contextmanager
def timed(wall: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    wall[name] = time.perf_counter() - start


def frozen_features(frozen: keras.Model, inputs: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Run the frozen bottom of the backbone once over ``inputs``, with a progress bar."""
    run = tf.function(lambda x: frozen(x, training=False))
    batches = [inputs[i : i + batch_size] for i in range(0, len(inputs), batch_size)]
    return np.concatenate([run(tf.constant(b)).numpy() for b in tqdm(batches, desc="frozen features")])


def classifier_head(top: keras.Model, n_classes: int, dropout: float) -> keras.Model:
    features = keras.Input(top.input_shape[1:])
    x = top(features)
    x = keras.layers.GlobalAveragePooling2D()(x) if len(x.shape) == 4 else x
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model(features, outputs, name="head")


def live_callback(live: Live) -> keras.callbacks.Callback:
    # Imported late: dvclive.keras subclasses tf.keras.callbacks.Callback, which is only
    # tf_keras once clothing.tf has set TF_USE_LEGACY_KERAS.
    from dvclive.keras import DVCLiveCallback

    return DVCLiveCallback(live=live)


def unfreeze(top: keras.Model, pretrained: bool) -> None:
    """Make the top trainable. Pretrained batch norm keeps its statistics; random batch norm learns."""
    top.trainable = True
    if not pretrained:
        # Random BN (mean 0, var 1, scale 1, offset 0) left frozen would leave bias-free
        # convolutions with no normalisation and no offsets: the network could hardly learn.
        return
    for layer in top.layers:
        # The batches here are too small to re-estimate ImageNet statistics well.
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def prune(
    head: keras.Model, data: CachedViews, validation: tuple, p: TrainParams, objective: Objective, live: Live
) -> dict:
    """Prune ``head``'s weights in place, fine-tuning as the sparsity rises; its sparsity and val accuracy."""
    pruning = prunable_copy(head, p.prune.sparsity, p.prune.epochs * len(data))
    callbacks = [pruning_step(), live_callback(live)]
    fit(pruning, data, validation, p.prune.epochs, p.prune.lr, "constant", objective, callbacks,
        initial_epoch=p.head.epochs + p.fine_tune.epochs)  # fmt: skip
    copy_weights(pruning, head)
    return sparsity_of(head) | {"val_accuracy": accuracy_on(head, validation)}


def cluster(
    head: keras.Model, data: CachedViews, validation: tuple, p: TrainParams, objective: Objective, live: Live
) -> dict:
    """Cluster ``head``'s kernels in place, fine-tuning the shared values; what was clustered and val accuracy."""
    clustering = clusterable_copy(head, p.cluster.clusters)
    fit(clustering, data, validation, p.cluster.epochs, p.cluster.lr, "constant", objective,
        [live_callback(live)], initial_epoch=p.head.epochs + p.fine_tune.epochs)  # fmt: skip
    names = clustered_layers(clustering)
    copy_weights(stripped(clustering), head)
    return {
        "kernels": len(names),
        "max_distinct_values": max(distinct_values(head, names).values(), default=0),
        "val_accuracy": accuracy_on(head, validation),
    }


def accuracy_on(model: keras.Model, validation: tuple) -> float:
    features, targets = validation
    predicted = model.predict(features, verbose=0)
    labels = targets[:, : predicted.shape[1]]  # without the teacher's part, when distilling
    return round(float(np.mean(predicted.argmax(axis=1) == labels.argmax(axis=1))), 4)


@dataclass(frozen=True)
class Objective:
    loss: keras.losses.Loss | Callable
    accuracy: str | keras.metrics.Metric

    @classmethod
    def of(cls, p: TrainParams, n_classes: int) -> Objective:
        """Cross-entropy with the labels, or with labels and teachers when distilling."""
        if not p.distill.teachers:
            return cls(keras.losses.CategoricalCrossentropy(label_smoothing=p.label_smoothing), "accuracy")
        return cls(distillation_loss(n_classes, p.distill, p.label_smoothing), label_accuracy(n_classes))


def teacher_answers(p: TrainParams, images: list[str], classes: list[str]) -> np.ndarray | None:
    """The teach stage's probabilities for each view of each training photo, softened; None without teachers."""
    if not p.distill.teachers:
        return None
    expected = made_for(p.distill.teachers, p.augment, p.seed)
    return load_answers(expected, images, classes, len(view_numbers(p.augment)), p.distill.temperature)


def worker_feed(
    data: CachedViews, validation: tuple, photos: tuple[int, int], workers: Cluster, p: TrainParams
) -> WorkerFeed:
    """The batches CachedViews makes of this worker's photos, as its part of each global batch."""
    weights = np.ones(len(data.targets), np.float32) if data.weights is None else data.weights
    batch = per_worker_batch(p.batch_size, workers)
    return WorkerFeed(data.views, data.targets, weights, validation, photos, batch, workers, p.seed)


def class_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.bincount(labels, minlength=n_classes)
    return len(labels) / (n_classes * np.maximum(counts, 1))


def fit(model, data, validation, epochs, lr, schedule, objective, callbacks, initial_epoch=0) -> None:
    if epochs == 0:
        return
    steps = epochs * len(data)
    rate = keras.optimizers.schedules.CosineDecay(lr, steps) if schedule == "cosine" else lr
    model.compile(keras.optimizers.Adam(rate), objective.loss, metrics=[objective.accuracy])
    if isinstance(data, WorkerFeed):
        inputs, verbose = data.fit_inputs(initial_epoch), 2 if data.cluster.is_chief else 0
    else:
        inputs, verbose = {"x": data, "validation_data": validation}, 2
    model.fit(
        **inputs, epochs=initial_epoch + epochs, initial_epoch=initial_epoch, callbacks=callbacks, verbose=verbose,
    )  # fmt: skip


class Curves(Live):
    """dvclive's per-epoch files, without its git and DVC integration.

    ``dvc repro`` already tracks metrics/train/, and dvclive 3.49 asks git for HEAD before
    checking that there is one: in a repo with no commit yet it raises (treeverse/dvclive#522).
    """

    def _init_dvc(self) -> None:
        self._dvc_repo = None


class CachedViews(keras.utils.Sequence):
    """Batches of cached features; epoch ``e`` serves augmented view ``e mod views``, reshuffled."""

    def __init__(self, views, labels, n_classes, batch_size, seed, class_weights=None, teacher=None) -> None:
        super().__init__()
        self.views, self.batch_size, self.n_classes, self.teacher = views, batch_size, n_classes, teacher
        self.targets = keras.utils.to_categorical(labels, n_classes)
        self.weights = None if class_weights is None else class_weights[labels]
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        self.order = self.rng.permutation(len(labels))

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, i: int) -> tuple:
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        view = self.epoch % len(self.views)
        targets = self.targets[rows]
        if self.teacher is not None:  # [label | teacher's softened probabilities on this view]
            targets = np.concatenate([targets, self.teacher[view][rows]], axis=1)
        batch = (self.views[view][rows], targets)
        return batch if self.weights is None else (*batch, self.weights[rows])

    def targets_of(self, labels: np.ndarray) -> np.ndarray:
        """Targets for photos the teachers did not score (validation): zeros in the teachers' part."""
        targets = keras.utils.to_categorical(labels, self.n_classes)
        return targets if self.teacher is None else np.concatenate([targets, np.zeros_like(targets)], axis=1)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self.rng.permutation(len(self.order))


class KeepBest(keras.callbacks.Callback):
    """Remember the weights of the epoch with the best validation accuracy (earliest on ties)."""

    def __init__(self) -> None:
        super().__init__()
        self.weights, self.epoch, self.logs = None, -1, {"val_accuracy": -1.0}
        self.epochs_run = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.epochs_run += 1
        if logs["val_accuracy"] > self.logs["val_accuracy"]:
            self.weights, self.epoch, self.logs = self.model.get_weights(), epoch, dict(logs)


if __name__ == "__main__":
    run_stage(main)
