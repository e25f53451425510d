"""TensorFlow with the Keras 2 API (tf_keras): import ``tf`` and ``keras`` from here.

TF_USE_LEGACY_KERAS must be set before TensorFlow is first imported, or ``tf.keras``
would be Keras 3 while the models here are tf_keras ones. The import's native start-up
lines are silenced (CLOTHING_VERBOSE=1 brings them back).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from clothing.quiet import native_logs_silenced

with native_logs_silenced():
    import tensorflow as tf
    import tf_keras as keras

__all__ = ["keras", "tf"]
