"""TensorFlow with the Keras 2 API (tf_keras): import ``tf`` and ``keras`` from here.

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported, or ``tf.keras``
would be Keras 3 while the models here are tf_keras ones.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "tf"]
