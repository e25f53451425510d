"""clothing-classify predict: good photos, every kind of bad input, and agreement with evaluate."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import photo, plain_tflite
from PIL import Image

from clothing.commands.cli import decoded_ahead, default_model, main
from clothing.data.images import load_image
from clothing.errors import PipelineError
from clothing.models.classifier import load_classifier


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clothing.commands.cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder of good photos in awkward formats and one of bad files."""
    root = tmp_path_factory.mktemp("photos")
    good, bad = root / "good", root / "bad"
    good.mkdir()
    bad.mkdir()
    photo(good / "red.jpg", (200, 40, 40), 1)
    Image.new("RGBA", (50, 40), (40, 160, 40, 128)).save(good / "alpha.png")
    Image.new("L", (40, 40), 90).save(good / "gray.jpg")
    Image.new("CMYK", (40, 40), (0, 200, 200, 0)).save(good / "cmyk.jpg")
    Image.new("RGB", (10000, 10000), (40, 40, 200)).save(good / "huge.jpg", quality=50)
    Image.new("RGB", (40, 40), (40, 160, 40)).save(good / "phone.heic")
    Image.new("RGB", (40, 40), (40, 160, 40)).save(good / "web.avif")
    photo(good / "camera.jfif", (200, 40, 40), 2)
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.jpg").write_text("this is not a photo\n")
    data = (good / "red.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return root


def rows(text: str) -> dict[str, str]:
    """file -> top-1 class, from --format csv."""
    return {r["file"]: r["class"] for r in csv.DictReader(io.StringIO(text)) if r["rank"] == "1"}


def test_good_photos_in_awkward_formats_are_classified(trained: Path, photos: Path) -> None:
    result = cli("predict", str(photos / "good"), "--format", "csv", cwd=trained)
    assert result.returncode == 0, result.stderr
    names = ["alpha.png", "camera.jfif", "cmyk.jpg", "gray.jpg", "huge.jpg", "phone.heic", "red.jpg", "web.avif"]
    assert sorted(Path(f).name for f in rows(result.stdout)) == names
    assert len(result.stdout.strip().splitlines()) == 1 + len(names) * 3  # header, top 3 per photo


@pytest.mark.parametrize(
    ("name", "rgb"),
    [
        ("alpha.png", (147, 207, 147)),  # 50% green over white, not over black
        ("cmyk.jpg", (255, 55, 55)),  # C0 M200 Y200 K0 is a red
        ("gray.jpg", (90, 90, 90)),
        ("phone.heic", (40, 160, 40)),
        ("web.avif", (40, 160, 40)),
    ],
)
def test_awkward_formats_decode_to_the_colours_a_viewer_shows(photos: Path, name: str, rgb: tuple) -> None:
    pixels = load_image(photos / "good" / name, 8).reshape(-1, 3).astype(int)
    assert np.abs(pixels - rgb).max() <= 4, pixels.mean(axis=0)


def test_a_huge_jpeg_is_decoded_at_reduced_scale(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded_sizes = []
    resize = Image.Image.resize

    def recording_resize(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        decoded_sizes.append(self.size)
        return resize(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", recording_resize)
    pixels = load_image(photos / "good/huge.jpg", 32)
    assert decoded_sizes == [(1250, 1250)]  # 10000 / 8: the JPEG decoder's smallest scale that keeps 32 px
    assert np.abs(pixels.reshape(-1, 3).astype(int) - (40, 40, 200)).max() <= 4


def test_each_bad_file_gets_one_line_and_the_good_ones_still_run(trained: Path, photos: Path) -> None:
    result = cli("predict", str(photos / "good/red.jpg"), str(photos / "bad"), "nowhere.jpg", cwd=trained)
    assert result.returncode == 1
    errors = sorted(error_lines(result))
    assert len(errors) == 4
    assert errors[0] == f"error: {photos}/bad/empty.jpg: empty file"
    assert errors[1] == f"error: {photos}/bad/notes.jpg: not an image file"
    assert errors[2].startswith(f"error: {photos}/bad/truncated.jpg: cannot decode (image file is truncated")
    assert errors[3] == "error: nowhere.jpg: no such file or directory"
    assert "red.jpg" in rows_of_table(result.stdout) and "Traceback" not in result.stderr


def error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """What stderr says besides the progress bar."""
    return [line for line in result.stderr.replace("\r", "\n").splitlines() if line.startswith("error:")]


def rows_of_table(text: str) -> list[str]:
    return [Path(line.split()[0]).name for line in text.strip().splitlines()]


def test_empty_directory_and_unmatched_glob(trained: Path, tmp_path: Path) -> None:
    result = cli("predict", str(tmp_path), str(tmp_path / "*.jpg"), cwd=trained)
    assert result.returncode == 1
    assert error_lines(result) == [
        f"error: {tmp_path}: directory has no images",
        f"error: {tmp_path}/*.jpg: pattern matches no files",
    ]


def test_glob_json_top_k_and_output_file(trained: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "predictions.json"
    pattern = str(photos / "good" / "*.jpg")
    result = cli("predict", pattern, "--top-k", "2", "--format", "json", "--output", str(out), cwd=trained)
    assert result.returncode == 0 and result.stdout == ""
    records = json.loads(out.read_text())
    assert len(records) == 4
    for record in records:
        probabilities = [p["probability"] for p in record["predictions"]]
        assert len(probabilities) == 2 and probabilities == sorted(probabilities, reverse=True)


def test_missing_or_broken_model_is_one_clear_error(trained: Path, tmp_path: Path) -> None:
    result = cli("predict", "data/raw/images", "--model", "models/nope.keras", cwd=trained)
    assert result.returncode == 1 and result.stderr == "error: models/nope.keras: no such model file\n"
    broken = tmp_path / "model.keras"
    broken.write_bytes(b"not a model")
    (tmp_path / "model.json").write_text((trained / "models/model.json").read_text())
    with pytest.raises(PipelineError, match="cannot load model"):
        load_classifier(broken)


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    upright = np.zeros((40, 20, 3), np.uint8)
    upright[:10] = 255  # white band at the top of a tall photo
    stored = Image.fromarray(np.rot90(upright, k=1))  # stored sideways...
    exif = stored.getexif()
    exif[0x0112] = 6  # ...with EXIF saying "rotate 90 degrees clockwise to view"
    stored.save(tmp_path / "sideways.jpg", exif=exif, quality=100)
    Image.fromarray(upright).save(tmp_path / "upright.jpg", quality=100)
    a, b = load_image(tmp_path / "sideways.jpg", 16), load_image(tmp_path / "upright.jpg", 16)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 8


def test_cli_agrees_with_evaluate_for_every_test_file(trained: Path) -> None:
    evaluated = list(csv.DictReader(io.StringIO((trained / "metrics/eval/predictions.csv").read_text())))
    files = [f"data/raw/images/{r['image']}.jpg" for r in evaluated]
    result = cli("predict", *files, "--format", "csv", cwd=trained)
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout) == {f: r["predicted"] for f, r in zip(files, evaluated, strict=True)}


def test_python_api_matches_the_cli(trained: Path) -> None:
    classifier = load_classifier(trained / "models/model.keras")
    files = sorted((trained / "data/raw/images").glob("pants-0*.jpg"))
    probabilities = classifier.predict_files(files)
    result = cli("predict", *map(str, files), "--format", "json", "--top-k", "3", cwd=trained)
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert [r["file"] for r in records] == [str(f) for f in files]
    for record, row in zip(records, probabilities, strict=True):
        for prediction in record["predictions"]:
            index = classifier.info.classes.index(prediction["class"])
            assert prediction["probability"] == pytest.approx(row[index], abs=6e-5)


def test_min_confidence_marks_uncertain_photos(trained: Path) -> None:
    files = [str(p) for p in sorted((trained / "data/raw/images").glob("*-0[0-4].jpg"))]
    records = json.loads(cli("predict", *files, "--format", "json", cwd=trained).stdout)
    confidence = sorted(r["predictions"][0]["probability"] for r in records)
    assert not any(r["uncertain"] for r in records)  # no threshold, nothing uncertain
    threshold = (confidence[0] + confidence[-1]) / 2
    assert confidence[0] < threshold < confidence[-1]
    result = cli("predict", *files, "--format", "json", "--min-confidence", str(threshold), cwd=trained)
    flagged = {r["file"]: r["uncertain"] for r in json.loads(result.stdout)}
    assert flagged == {r["file"]: r["predictions"][0]["probability"] < threshold for r in records}
    table = cli("predict", *files, "--min-confidence", str(threshold), cwd=trained).stdout
    assert table.count("uncertain: ") == sum(flagged.values())


def test_default_model_is_found_from_another_folder(trained: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    photo(tmp_path / "red.jpg", (200, 40, 40), 1)
    monkeypatch.setattr("clothing.commands.cli.PROJECT_MODEL", trained / "models/model.keras")
    assert main(["predict", "red.jpg", "--output", "out.txt"]) == 0
    assert (tmp_path / "out.txt").read_text().startswith("red.jpg  ")
    monkeypatch.setattr("clothing.commands.cli.PROJECT_MODEL", tmp_path / "nowhere/model.keras")
    with pytest.raises(PipelineError, match=r"no model: looked for .*models/model.keras and .*nowhere/model.keras"):
        default_model()


def test_a_tflite_file_without_metadata_or_classes_file_says_so(tmp_path: Path) -> None:
    alone = plain_tflite(tmp_path / "model.tflite", (8, 8, 3))  # no metadata
    with pytest.raises(PipelineError, match=r"no TFLite metadata and its classes file model\.json is missing"):
        load_classifier(alone)
    (tmp_path / "broken.tflite").write_bytes(b"not a model")
    with pytest.raises(PipelineError, match=r"broken.tflite: cannot load model"):
        load_classifier(tmp_path / "broken.tflite")


def test_photos_decode_ahead_in_order_with_bounded_memory() -> None:
    decoded = []

    def decode(n: int) -> int:
        decoded.append(n)
        return n * 10

    with ThreadPoolExecutor(2) as pool:
        results = decoded_ahead(pool, decode, list(range(100)), ahead=5)
        assert next(results) == (0, 0)
        assert len(decoded) <= 6  # the first photo and at most five ahead, not the whole folder
        assert list(results) == [(n, n * 10) for n in range(1, 100)]


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exited:
        main(["predict"])
    assert exited.value.code == 2


def test_predict_prints_only_the_predictions_unless_verbose(trained: Path, photos: Path) -> None:
    """TensorFlow's native start-up lines (absl, oneDNN) are silenced; --verbose brings them back."""
    quiet = cli("predict", str(photos / "good/red.jpg"), cwd=trained)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert quiet.stdout.splitlines() == [line for line in quiet.stdout.splitlines() if "red.jpg" in line] != []
    verbose = cli("predict", "--verbose", str(photos / "good/red.jpg"), cwd=trained)
    assert "absl::InitializeLog" in verbose.stderr and verbose.stdout == quiet.stdout
