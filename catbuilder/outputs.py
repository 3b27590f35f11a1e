"""Where catbuilder writes: its own markers, safe replacement, atomic files.

A user's files are never at risk: catbuilder deletes or replaces an output
only when it recognises it as its own, of the same kind, by the marker it
writes (the ``catbuilder`` attribute of a Zarr store's root group, with a
``kind``), and then removes only the entries it wrote. Anything else at an
output path is refused with an error that names what is there.

Files (catalogs) are written beside their destination and moved into place
only when complete, so a failed or interrupted write never leaves half a
file where a good one was.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from catbuilder.errors import OutputExistsError

__all__ = [
    "atomic_path",
    "check_parquet_output",
    "file_sha256",
    "foreign_entries",
    "is_catbuilder_parquet",
    "remove_store",
    "store_kind",
    "store_meta",
    "temporary_sibling",
    "write_parquet",
]

#: kinds of Zarr store catbuilder writes, as recorded in their marker
STORE_KINDS = ("image-stack", "predictions")

# zarr's LocalStore writes every file atomically through "<name>.<uuid4 hex>.partial"
_ZARR_PARTIAL = re.compile(r"^[^/]*\.[0-9a-f]{32}\.partial$")
_TMP_TAG = ".catbuilder-tmp-"


def file_sha256(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes (hex), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def store_meta(path: str | os.PathLike[str]) -> dict | None:
    """The ``catbuilder`` attribute of the Zarr group at ``path`` (read from its
    ``zarr.json`` alone, so a store whose arrays disagree still tells), or None."""
    return _marker(Path(path))


def _marker(path: Path) -> dict | None:
    """The ``catbuilder`` attribute of the Zarr group at ``path``, or None."""
    meta = _read_json(path / "zarr.json")
    if meta is None or meta.get("node_type") != "group":
        return None
    raw = (meta.get("attributes") or {}).get("catbuilder")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, dict) else None


def store_kind(path: str | os.PathLike[str]) -> str | None:
    """The kind of catbuilder store at ``path`` (``"image-stack"``, ``"predictions"``), or None.

    Stores written before the marker had a ``kind`` are recognised by their
    build parameters and their main array.
    """
    path = Path(path)
    mark = _marker(path) if path.is_dir() else None
    if mark is None:
        return None
    if mark.get("kind") in STORE_KINDS:
        return str(mark["kind"])
    if "parameters" in mark:  # written by catbuilder 0.1 before kinds were recorded
        if (path / "images" / "zarr.json").is_file():
            return "image-stack"
        if (path / "probabilities" / "zarr.json").is_file():
            return "predictions"
    return None


def _is_array_dir(path: Path) -> bool:
    meta = _read_json(path / "zarr.json")
    return meta is not None and meta.get("node_type") == "array"


def foreign_entries(path: str | os.PathLike[str]) -> list[str]:
    """Entries of the store at ``path`` that are not parts of a Zarr store.

    A catbuilder store holds the group's ``zarr.json`` and one directory per
    array (its ``zarr.json`` and chunks under ``c/``), plus the temporary
    ``*.partial`` files of an interrupted Zarr write. Anything else was put
    there by someone else.
    """
    path = Path(path)
    out = []
    for entry in sorted(path.iterdir()):
        name = entry.name
        if name == "zarr.json" or _ZARR_PARTIAL.match(name):
            continue
        if entry.is_dir() and not entry.is_symlink() and _is_array_dir(entry):
            inner = [
                e.name
                for e in entry.iterdir()
                if not (e.name in ("zarr.json", "c") or _ZARR_PARTIAL.match(e.name))
            ]
            out.extend(f"{name}/{i}" for i in sorted(inner))
            continue
        out.append(name + ("/" if entry.is_dir() else ""))
    return out


def _describe(path: Path) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError:
        return ""
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f" (it holds {shown})" if names else " (an empty directory)"


def check_replaceable(path: str | os.PathLike[str], kind: str) -> None:
    """Raise unless ``path`` is absent or a catbuilder store of ``kind`` that
    holds nothing catbuilder did not write.

    Raises
    ------
    OutputExistsError
        Naming what is at ``path`` and what to do.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or not path.is_dir():
        raise OutputExistsError(
            f"{path} exists and is not a catbuilder {kind} store: catbuilder replaces only "
            "stores it wrote; choose another output path"
        )
    found = store_kind(path)
    if found != kind:
        what = f"a catbuilder {found} store" if found else f"not a catbuilder {kind} store"
        raise OutputExistsError(
            f"{path} exists and is {what}{_describe(path)}: catbuilder replaces only "
            f"{kind} stores it wrote; choose another output path"
        )
    foreign = foreign_entries(path)
    if foreign:
        raise OutputExistsError(
            f"{path} is a catbuilder {kind} store but also holds files catbuilder did not "
            f"write ({', '.join(foreign[:5])}); move them out or choose another output path"
        )


def remove_store(path: str | os.PathLike[str], kind: str) -> None:
    """Delete the catbuilder store of ``kind`` at ``path``, and only what it wrote.

    Raises
    ------
    OutputExistsError
        When ``path`` is not such a store or holds anything else; nothing is
        deleted then.
    """
    path = Path(path)
    check_replaceable(path, kind)
    if not path.exists():
        return
    for entry in sorted(path.iterdir()):
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    path.rmdir()


def is_catbuilder_parquet(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a Parquet file catbuilder wrote (a ``catbuilder*`` schema key)."""
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
    except Exception:
        return False
    return any(k.startswith(b"catbuilder") for k in meta)


def check_parquet_output(path: str | os.PathLike[str], what: str) -> Path:
    """Raise unless ``path`` is absent or a Parquet file catbuilder wrote."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_catbuilder_parquet(path):
        raise OutputExistsError(
            f"{path} exists and is not a file catbuilder wrote: catbuilder replaces only its "
            f"own {what} files; choose another output path"
        )
    return path


def write_parquet(df, path: str | os.PathLike[str], what: str) -> Path:
    """Write a table catbuilder made (an index, crossmatch pairs) as Parquet, safely.

    The file is marked as catbuilder's, written aside and moved into place; an
    existing ``path`` is replaced only if catbuilder wrote it.

    Raises
    ------
    OutputExistsError
        When ``path`` holds anything else.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = check_parquet_output(path, what)
    t = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(t.schema.metadata or {})
    meta.setdefault(b"catbuilder.kind", what.encode())
    with atomic_path(path) as tmp:
        pq.write_table(t.replace_schema_metadata(meta), tmp)
    return path


def temporary_sibling(path: str | os.PathLike[str], tag: str = "") -> Path:
    """A new, unused path next to ``path`` for catbuilder's own temporary output."""
    path = Path(os.path.abspath(path))
    return path.with_name(f".{path.name}{_TMP_TAG}{tag}{uuid.uuid4().hex[:12]}")


def stale_temporaries(path: str | os.PathLike[str], tag: str = "") -> list[Path]:
    """Temporary siblings of ``path`` left by an interrupted catbuilder write."""
    path = Path(os.path.abspath(path))
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}{_TMP_TAG}{tag}"
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(prefix))


def _gone_is_removed(function, path, exc) -> None:
    """``rmtree``'s error handler: an entry that vanished meanwhile is removed."""
    # a writer thread that failed alongside (a full disk) deletes its own partial file
    err = exc if isinstance(exc, BaseException) else exc[1]  # onexc, or onerror's exc_info
    if not isinstance(err, FileNotFoundError):
        raise err


def remove_temporary(path: Path) -> None:
    """Delete one of catbuilder's temporary siblings (recognised by its name)."""
    if _TMP_TAG not in path.name or not path.name.startswith("."):
        raise ValueError(f"{path} is not a catbuilder temporary path")
    if path.is_dir() and not path.is_symlink():
        if sys.version_info >= (3, 12):
            shutil.rmtree(path, onexc=_gone_is_removed)
        else:
            shutil.rmtree(path, onerror=_gone_is_removed)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Write to a temporary sibling, then move it to ``path`` in one step.

    The block writes a file (or directory) at the yielded path; when it ends
    without an error the result replaces ``path`` (``os.replace``; a
    directory at ``path`` must have been checked and removed by the caller).
    On an error the temporary output is deleted and ``path`` is untouched.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            raise OutputExistsError(f"{path} is a directory; it was not replaced")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            remove_temporary(tmp)
