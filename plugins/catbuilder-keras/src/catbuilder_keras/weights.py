"""ImageNet weights files: where Keras keeps them, and registering or fetching one.

No TensorFlow import: the files are checked by the MD5 hash Keras publishes
for each (the ``file_hash`` its applications pass to ``get_file``), copied
into Keras's cache (``$KERAS_HOME/models``, default ``~/.keras/models``),
and downloaded only when a user asks (:func:`fetch`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["FILES", "add", "cache_path", "fetch"]

_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"

#: architecture -> (folder under the Keras applications URL, file name, MD5 Keras publishes)
FILES: dict[str, tuple[str, str, str]] = {
    "xception": ("xception", "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "b0042744bf5b25fce3cb969f33bebb97"),
    "resnet50": ("resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 "4d473c1dd8becc155b73f8504c6f6626"),
    "inceptionv3": ("inception_v3", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                    "bcbd6486424b2319ff4ef7d526e38f63"),
    "vgg16": ("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
              "6d6bbae143d832006294945121d1f1fc"),
    "vgg19": ("vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
              "253f8cb515780f3b799900260a226db6"),
}  # fmt: skip


def _entry(architecture: str) -> tuple[str, str, str]:
    try:
        return FILES[architecture]
    except KeyError:
        raise ValueError(
            f"{architecture} has no ImageNet weights (those that do: {', '.join(FILES)})"
        ) from None


def url(architecture: str) -> str:
    """Where Keras publishes the architecture's ImageNet weights (without the top)."""
    folder, name, _ = _entry(architecture)
    return f"{_URL}{folder}/{name}"


def cache_path(architecture: str) -> Path:
    """Where Keras (and catbuilder) look for the file: ``$KERAS_HOME/models/<file>``."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "models" / _entry(architecture)[1]


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _check(architecture: str, path: Path) -> None:
    """Raise ValueError unless ``path`` has the MD5 Keras publishes for the file."""
    _, name, md5 = _entry(architecture)
    got = _md5(path)
    if got != md5:
        raise ValueError(
            f"{path} is not Keras's {name} (MD5 {got}, published {md5}): check the download"
        )


def add(architecture: str, file: str | os.PathLike[str]) -> Path:
    """Check ``file`` against the hash Keras publishes and copy it into the cache.

    Raises
    ------
    FileNotFoundError
        When ``file`` does not exist.
    ValueError
        When its hash is not the published one (another architecture's file,
        a file with the top, or a broken download).
    """
    src = Path(file)
    if not src.is_file():
        raise FileNotFoundError(f"weights file not found: {src}")
    _check(architecture, src)
    _, name, md5 = _entry(architecture)
    dst = cache_path(architecture)
    if dst.is_file() and _md5(dst) == md5:
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=dst.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dst


def fetch(architecture: str, timeout: float = 30.0) -> Path:
    """Download the file from Keras's published address into the cache (checked).

    Raises
    ------
    catbuilder.errors.CatbuilderError
        When the machine cannot reach it (one line: where to get it instead).
    """
    import urllib.error
    import urllib.request

    from catbuilder.errors import CatbuilderError

    dst = cache_path(architecture)
    address = url(architecture)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(address, timeout=timeout) as r:
            shutil.copyfileobj(r, out)
        _check(architecture, Path(tmp))
        os.replace(tmp, dst)  # downloaded beside it: moved, not copied again
        return dst
    except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
        reason = getattr(err, "reason", err)
        raise CatbuilderError(
            f"cannot download {address} ({reason}); download it on a machine that can and "
            f"run: catbuilder weights add keras.{architecture} FILE"
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
