"""TensorFlow and tf-keras, imported once, without their C++ start-up lines.

On a CPU machine TensorFlow prints CUDA plugin-registration errors, CPU
feature notes and a cuInit failure on every start; none is actionable. They
are dropped (``TF_CPP_MIN_LOG_LEVEL=3`` and the lines written before
TensorFlow's logging starts), unless ``catbuilder --debug`` or
``TF_CPP_MIN_LOG_LEVEL`` set by the user says otherwise.
"""

from __future__ import annotations

import os

from catbuilder.native_logs import debugging, filtered_stderr

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # horovod.tensorflow needs Keras 2
if not debugging():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: native start-up lines that say nothing a user can act on
NOISE = (
    r"Unable to register cu(DNN|BLAS|FFT) factory",
    r"All log messages before absl::InitializeLog\(\) is called",
    r"Could not find cuda drivers",
    r"failed call to cuInit",
    r"oneDNN custom operations are on",
    r"cpu_feature_guard|To enable the following instructions|rebuild TensorFlow",
    r"TF-TRT Warning",
)

with filtered_stderr(NOISE):
    import tensorflow as tf
    import tf_keras as keras

__all__ = ["keras", "tf"]
