"""``params.yaml``, validated: every stage reads its knobs through :func:`load_params`.

A typo'd key, a value of the wrong type or out of range, fractions that do not sum
to one: each is one :class:`PipelineError` that names the key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    StrictBool,
    ValidationError,
    model_validator,
)

from clothing.errors import PipelineError

Fraction = Annotated[float, Field(gt=0, lt=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FetchParams(Section):
    url: str
    archive: str
    content_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    retries: NonNegativeInt = 3
    timeout_s: PositiveFloat = 60.0


class CleanParams(Section):
    drop_labels: list[str] = ["Not sure", "Skip", "Other"]
    keep_labels: list[str] | None = None

    @model_validator(mode="after")
    def _keep_and_drop_disjoint(self) -> CleanParams:
        both = sorted(set(self.keep_labels or []) & set(self.drop_labels))
        if both:
            raise ValueError(f"labels both kept and dropped: {both}")
        return self


class SplitParams(Section):
    seed: NonNegativeInt = 42
    train: Fraction = 0.8
    val: Fraction = 0.1
    test: Fraction = 0.1
    group_by_sender: StrictBool = False

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1) > 1e-6:
            raise ValueError(f"train + val + test must sum to 1, got {total:g}")
        return self


class AugmentParams(Section):
    enabled: StrictBool = True
    views: Annotated[int, Field(ge=1)] = 4
    strength: Annotated[float, Field(ge=0, le=2)] = 1.0


class PhaseParams(Section):
    epochs: NonNegativeInt
    lr: PositiveFloat


class FineTuneParams(PhaseParams):
    unfreeze: Annotated[float, Field(ge=0, le=1)] = 0.2
    schedule: Literal["cosine", "constant"] = "cosine"


class TrainParams(Section):
    backbone: Literal["mobilenet_v2", "efficientnet_b0", "resnet50", "convnext_tiny", "baseline_cnn"]
    weights: str | None = "imagenet"
    image_size: Annotated[int, Field(ge=32, le=1024)] = 224
    batch_size: Annotated[int, Field(ge=1)] = 32
    seed: NonNegativeInt = 42
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    class_weighting: StrictBool = False
    augment: AugmentParams = AugmentParams()
    head: PhaseParams
    fine_tune: FineTuneParams


class EvaluateParams(Section):
    tta_flip: StrictBool = True
    calibration_bins: Annotated[int, Field(ge=2)] = 15
    gallery_size: Annotated[int, Field(ge=0)] = 16


class QuantizeParams(Section):
    variants: list[Literal["float32", "float16", "dynamic_int8", "int8"]] = [
        "float32",
        "float16",
        "dynamic_int8",
        "int8",
    ]
    representative_size: Annotated[int, Field(ge=1)] = 200
    seed: NonNegativeInt = 0
    int8_io: StrictBool = False
    warmup_runs: NonNegativeInt = 20
    latency_runs: Annotated[int, Field(ge=1)] = 200


class Params(Section):
    mirrors: list[str] = []
    fetch: FetchParams
    clean: CleanParams = CleanParams()
    split: SplitParams = SplitParams()
    train: TrainParams | None = None
    evaluate: EvaluateParams = EvaluateParams()
    quantize: QuantizeParams = QuantizeParams()


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise PipelineError(f"{path}: cannot read params: {' '.join(str(error).split())}") from None
    try:
        return Params.model_validate(raw or {})
    except ValidationError as error:
        raise PipelineError(f"{path}: {_describe(error)}") from None


def _describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key{_suggestion(item['loc'])}")
        else:
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {message}")
    return "; ".join(problems)


def _suggestion(loc: tuple) -> str:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
