"""Classify photos with MediaPipe Tasks' ImageClassifier: the interop check of quantize's metadata.

    <mediapipe venv>/bin/python tools/mediapipe_classify.py MODEL.tflite PHOTO... > answers.json

Runs in its own environment (``make mediapipe``: mediapipe 0.10.21 pins numpy < 2 and
protobuf < 5, which TensorFlow 2.21 cannot share), so it imports nothing of this project.
MediaPipe reads the labels and the input normalisation from the model's metadata only.
Prints one JSON record per photo: its file and MediaPipe's categories, likeliest first.
"""

import json
import sys

import mediapipe as mp
from mediapipe.tasks.python import BaseOptions
from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions


def main(model: str, photos: list[str]) -> None:
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=model), max_results=3)
    records = []
    with ImageClassifier.create_from_options(options) as classifier:
        for photo in photos:
            result = classifier.classify(mp.Image.create_from_file(photo))
            categories = result.classifications[0].categories
            records.append({
                "file": photo,
                "predictions": [{"class": c.category_name, "probability": round(c.score, 4)} for c in categories],
            })  # fmt: skip
    json.dump(records, sys.stdout, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
