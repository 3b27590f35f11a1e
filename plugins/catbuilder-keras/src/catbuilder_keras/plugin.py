"""Entry-point classes: metadata and factories, no TensorFlow import."""

from __future__ import annotations

from typing import Any, ClassVar

from catbuilder.plugins import ModelPlugin

_URL = "https://github.com/catbuilder/catbuilder/tree/main/plugins/catbuilder-keras"


class _KerasPlugin(ModelPlugin):
    estimator = "catbuilder_keras.estimator:KerasClassifier"
    framework = "tensorflow (tf-keras)"
    capabilities = frozenset({"classify", "embed", "distributed"})
    fork_unsafe_modules = ("tensorflow",)
    url = _URL
    # transfer learning starts from ImageNet: the default schedule freezes the base
    default_params: ClassVar[dict[str, Any]] = {"weights": "imagenet"}

    def add_weights(self, file: str) -> str:
        """Register a user's ImageNet weights file (checked against Keras's hash)."""
        from catbuilder_keras import weights

        return str(weights.add(self.fixed_params["architecture"], file))

    def fetch_weights(self) -> str:
        """Download the ImageNet weights file from Keras's address (checked)."""
        from catbuilder_keras import weights

        return str(weights.fetch(self.fixed_params["architecture"]))

    def worker_env(self, threads: int) -> dict[str, str]:
        """TensorFlow's thread pools sized to the worker, tf-keras, quiet C++ logs."""
        import os

        from catbuilder import config
        from catbuilder.native_logs import debugging

        return {
            "TF_NUM_INTRAOP_THREADS": str(max(1, int(threads))),
            "TF_NUM_INTEROP_THREADS": str(config.get("keras.inter-op-threads")),
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get(
                "TF_CPP_MIN_LOG_LEVEL", "0" if debugging() else "3"
            ),
            "TF_USE_LEGACY_KERAS": "1",
            # take GPU memory as it is needed, not all of it at start
            "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        }


class XceptionPlugin(_KerasPlugin):
    fixed_params: ClassVar[dict[str, Any]] = {"architecture": "xception"}
    input_size = 299
    description = "Xception with the Khan et al. (2019) head; three-stage transfer learning"


class ResNet50Plugin(_KerasPlugin):
    fixed_params: ClassVar[dict[str, Any]] = {"architecture": "resnet50"}
    input_size = 224
    description = "ResNet50 with the Khan et al. (2019) head"


class InceptionV3Plugin(_KerasPlugin):
    fixed_params: ClassVar[dict[str, Any]] = {"architecture": "inceptionv3"}
    input_size = 299
    description = "InceptionV3 with the Khan et al. (2019) head"


class VGG16Plugin(_KerasPlugin):
    fixed_params: ClassVar[dict[str, Any]] = {"architecture": "vgg16"}
    input_size = 224
    description = "VGG16 with the Khan et al. (2019) head"


class VGG19Plugin(_KerasPlugin):
    fixed_params: ClassVar[dict[str, Any]] = {"architecture": "vgg19"}
    input_size = 224
    description = "VGG19 with the Khan et al. (2019) head"


class SmallCNNPlugin(_KerasPlugin):
    fixed_params: ClassVar[dict[str, Any]] = {"architecture": "small-cnn"}
    input_size = 64
    description = "A four-block CNN trained from scratch: fast runs, tests, laptops"
    # trained from scratch (no ImageNet weights); shifts and zooms of 0.3 slow a
    # from-scratch model on a few thousand objects
    default_params: ClassVar[dict[str, Any]] = {"augment": "rotations"}
