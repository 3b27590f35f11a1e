"""Model definitions: pretrained bases from keras applications, the paper's head."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from catbuilder_keras.tf import keras

__all__ = ["ARCHITECTURES", "ArchSpec", "build_model", "resolve_weights", "set_trainable"]


@dataclass(frozen=True)
class ArchSpec:
    """An architecture: its keras application, sizes, freezing points, input scaling.

    Its ImageNet weights file, if it has one, is in :mod:`catbuilder_keras.weights`.
    """

    application: str | None
    default_size: int
    min_size: int
    top: int | None  # first trainable base layer in stage 2 ("top")
    all: int | None  # first trainable base layer in stage 3 ("all")
    input_mode: str  # "tf": [-1, 1]; "caffe": BGR minus the ImageNet means


ARCHITECTURES: dict[str, ArchSpec] = {
    # Khan et al. (2019): stage 2 trains layers 40+, stage 3 layers 2+
    "xception": ArchSpec("Xception", 299, 71, 40, 2, "tf"),
    # the last residual stage (conv5_block1 starts at 143)
    "resnet50": ArchSpec("ResNet50", 224, 32, 143, 2, "caffe"),
    # the top two inception blocks, as in the Keras fine-tuning guide
    "inceptionv3": ArchSpec("InceptionV3", 299, 75, 249, 2, "tf"),
    # the last convolutional block
    "vgg16": ArchSpec("VGG16", 224, 32, 15, 2, "caffe"),
    "vgg19": ArchSpec("VGG19", 224, 32, 17, 2, "caffe"),
    "small-cnn": ArchSpec(None, 64, 16, None, None, "tf"),
}


def spec(architecture: str) -> ArchSpec:
    try:
        return ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(
            f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}"
        ) from None


def resolve_weights(architecture: str, weights: str | os.PathLike[str] | None) -> str | None:
    """The weights file to initialise the base from (None: random).

    ``"imagenet"`` looks for Keras's cached file and never downloads.

    Raises
    ------
    FileNotFoundError
        Saying where to put the ImageNet file, or naming a missing path.
    """
    spec(architecture)  # an unknown architecture is an error here too
    if weights is None:
        return None
    if str(weights) == "imagenet":
        from catbuilder_keras import weights as files

        if architecture not in files.FILES:
            raise ValueError(f"{architecture} has no ImageNet weights; use weights=None")
        path = files.cache_path(architecture)
        name = path.name
        if not path.exists():
            raise FileNotFoundError(
                f"ImageNet weights for {architecture} are not on this machine and catbuilder "
                f"never downloads them unasked: `catbuilder weights add keras.{architecture} "
                f"FILE` registers {name} (from {files.url(architecture)}) at {path}, "
                f"`catbuilder weights fetch keras.{architecture}` downloads it, or pass "
                f"weights='/path/to/{name}'."
            )
        return str(path)
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    return str(path)


def _small_cnn(size: int) -> keras.Model:
    inp = keras.Input((size, size, 3), name="small_cnn_input")
    x = inp
    for i, filters in enumerate((32, 64, 96, 128)):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"conv{i}",
        )(x)
        # a short run has few steps: moving statistics must follow quickly
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    return keras.Model(inp, x, name="small_cnn")


def _caffe_inputs(x):
    """[-1, 1] RGB to the BGR, mean-subtracted inputs ResNet50/VGG were trained on."""
    x = (x + 1.0) * 127.5
    x = x[..., ::-1]
    mean = keras.backend.constant([103.939, 116.779, 123.68])
    return x - mean


def build_model(
    architecture: str,
    input_size: int,
    n_classes: int,
    head_units: tuple[int, ...] = (1024,),
    dropout: float = 0.7,
    weights: str | None = None,
    model_class: type | None = None,
) -> tuple[keras.Model, keras.Model]:
    """The classifier: base, global pooling, dense head with dropout, softmax.

    The last dense layer of the head is named ``embedding`` (1024-d by
    default, the paper's feature space); the output layer ``probabilities``.

    Returns
    -------
    model, base
        The whole network, and the base (whose layer indices the stage
        freezing points refer to).
    """
    s = spec(architecture)
    if input_size < s.min_size:
        raise ValueError(
            f"{architecture} needs inputs of at least {s.min_size} px, got {input_size}"
        )
    if s.application is None:
        base = _small_cnn(input_size)
    else:
        app = getattr(keras.applications, s.application)
        base = app(include_top=False, weights=weights, input_shape=(input_size, input_size, 3))
    inp = keras.Input((input_size, input_size, 3), name="image")
    x = (
        keras.layers.Lambda(_caffe_inputs, name="caffe_inputs")(inp)
        if (s.input_mode == "caffe")
        else inp
    )
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    for i, units in enumerate(head_units):
        last = i == len(head_units) - 1
        x = keras.layers.Dense(units, activation="relu", name="embedding" if last else f"dense{i}")(
            x
        )
        x = keras.layers.Dropout(dropout, name=f"dropout{i}")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    cls = model_class or keras.Model
    return cls(inp, out, name=f"catbuilder_{architecture.replace('-', '_')}"), base


def set_trainable(base: keras.Model, architecture: str, trainable_from) -> int:
    """Freeze the base below a stage's freezing point; returns trainable base layers.

    ``"head"``: whole base frozen; ``"top"``/``"all"``: the architecture's
    freezing points; an int: that layer index. Bases trained from scratch
    (the small CNN) stay trainable whatever the stage says.
    """
    s = spec(architecture)
    if s.application is None:
        start = 0
    elif trainable_from == "head":
        start = len(base.layers)
    elif trainable_from == "top":
        start = s.top
    elif trainable_from == "all":
        start = s.all
    else:
        start = int(trainable_from)
    base.trainable = True
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= start
    return sum(1 for layer in base.layers if layer.trainable)
