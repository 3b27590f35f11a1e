"""Chunked inference over an image stack on Dask workers.

One Dask task per chunk of the output; the model is loaded once per worker
process and kept (not once per task); a batch is read and preprocessed in a
background thread while the model works on the previous one. Probabilities
and embeddings are written into a Zarr store next to the stack with region
writes and a per-object ``written`` mark, so a run that is stopped (a worker
killed, say) and started again with the same arguments computes only the
chunks that are missing, and gives the same result.
"""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from catbuilder import config
from catbuilder import zarr_store as zs
from catbuilder.errors import warn
from catbuilder.predictions import KIND, Predictions, open_predictions
from catbuilder.runtime.affinity import bind_workers
from catbuilder.runtime.thread_cpu import thread_ended

__all__ = ["Predictions", "open_predictions", "predict"]

_MODELS: OrderedDict[tuple[str, int], Any] = OrderedDict()
_STACKS: OrderedDict[str, Any] = OrderedDict()
_LOCK = threading.Lock()


def _cached(cache: OrderedDict, key: Any, make, keep: int) -> Any:
    """``cache[key]``, made on first use; the ``keep`` most recently used are kept.

    A worker that predicts many stacks or models in turn (a survey's
    partitions, self-training's rounds) holds a few, not every one it saw.
    """
    with _LOCK:  # made under the lock: threads of one worker load a model once
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = cache[key] = make()
        while len(cache) > keep:
            cache.popitem(last=False)
        return value


def _model(path: str) -> Any:
    """The model saved at ``path``, loaded once per process (the last two kept)."""
    from catbuilder.models.saved import MANIFEST, load_model

    key = (path, os.stat(Path(path) / MANIFEST).st_mtime_ns)
    return _cached(_MODELS, key, lambda: load_model(path), keep=2)


def _stack(path: str):
    """The stack at ``path``, opened once per process (the last four kept)."""
    from catbuilder.stack.store import ImageStack

    return _cached(_STACKS, path, lambda: ImageStack.open(path), keep=4)


def _output_shape(manifest: dict, model_path: str, embed: bool) -> tuple[list[str], int]:
    """The model's classes and embedding width, as its saved manifest records them."""
    classes = [str(c) for c in manifest.get("classes") or []]
    if not classes:
        raise ValueError(f"the model at {model_path} records no classes: was it fitted?")
    width = manifest.get("embedding_dim")
    if embed and not width:
        raise ValueError(
            f"the model at {model_path} has no embedding (its estimator has no transform "
            "or sets no n_features_out_); use embed=False"
        )
    return classes, int(width) if embed else 0


def _predict_chunks(
    stack_path: str,
    pieces: list[tuple[int, np.ndarray]],
    out_path: str,
    model_path: str,
    batch_size: int,
    embed: bool,
    tta: bool,
) -> int:
    """One Dask task: predict a run of output chunks, writing each as it completes.

    ``pieces`` are ``(start, stack positions)`` per output chunk. Batches are
    read and preprocessed across chunk boundaries one batch ahead of the
    model; each chunk's region and its ``written`` mark are stored as soon as
    its last object is predicted, so a task killed half-way keeps what it
    finished. Writes run in a background thread, beside the model.
    """
    from concurrent.futures import ThreadPoolExecutor

    import dask
    import zarr

    model = _model(model_path)
    group = zarr.open_group(out_path, mode="r+", use_consolidated=False)
    positions = np.concatenate([np.asarray(p) for _, p in pieces])
    ends = np.cumsum([len(p) for _, p in pieces])
    held: dict[str, list[np.ndarray]] = {}  # predicted, not yet written: per variable
    done = k = 0  # objects predicted; pieces written

    arrays: dict[str, Any] = {}  # opened once: each opening reads the array's metadata

    def write(region: slice, values: dict[str, np.ndarray]) -> None:
        for name in (*values, "written"):
            if name not in arrays:
                arrays[name] = group[name]
        zs.write_region(arrays, region, values)
        zs.mark_written(arrays, region)  # last

    writes = []
    writer = ThreadPoolExecutor(1, "catbuilder-writer")
    with writer, dask.config.set(scheduler="synchronous"):
        X = _stack(stack_path).isel(positions)
        for out in _outputs(model, X, batch_size, embed, tta):
            for name, v in out.items():
                held.setdefault(name, []).append(v)
            done += len(out["probabilities"])
            while k < len(pieces) and done >= ends[k]:
                n = int(ends[k]) - (0 if k == 0 else int(ends[k - 1]))
                whole = {name: np.concatenate(v) for name, v in held.items()}
                held = {name: [v[n:]] for name, v in whole.items()}
                start = pieces[k][0]
                region = slice(start, start + n)
                writes.append(
                    writer.submit(write, region, {name: v[:n] for name, v in whole.items()})
                )
                k += 1
        for w in writes:
            w.result()  # raise a failed write here
        writer.submit(thread_ended, "write")  # its CPU time, for thread_cpu.snapshot
    return len(positions)


def _outputs(model: Any, X: Any, batch_size: int, embed: bool, tta: bool):
    """Per batch, the arrays written to the store's variables.

    ``probabilities`` (calibrated when the model carries a calibration, with
    the model's own in ``raw_probabilities``), ``embeddings`` when asked, and
    for an ensemble ``member_std``, the spread of its members' probabilities.
    """
    cal = getattr(model, "calibration_", None)
    if hasattr(model, "iter_member_predictions"):
        batches = model.iter_member_predictions(X, batch_size=batch_size, embed=embed, tta=tta)
    else:
        batches = (
            (p, e, None)
            for p, e in model.iter_predictions(X, batch_size=batch_size, embed=embed, tta=tta)
        )
    for p, e, members in batches:
        p = np.asarray(p, np.float32)
        out = {"probabilities": p if cal is None else cal.apply(p)}
        if cal is not None:
            out["raw_probabilities"] = p
        if embed:
            out["embeddings"] = np.asarray(e, np.float32)
        if members is not None:
            out["member_std"] = np.asarray(members, np.float32).std(axis=0)
        yield out


def check_model_fits_stack(
    model_meta: dict, stack: Any, model_path: str, tta: bool | None = None
) -> None:
    """Check, before any worker starts, that a saved model can read this stack.

    Raises
    ------
    ValueError
        When the model needs bands the stack lacks.

    Warns
    -----
    InputWarning
        When the stack's cutouts differ in size from those the model was
        trained on (they are resized to the model's input, so objects appear
        at another angular scale), or when ``tta`` differs from what the
        model's calibration was fitted with.
    """
    params = model_meta.get("params") or {}
    fit_input = model_meta.get("fit_input") or {}
    need = list(params.get("rgb") or fit_input.get("bands") or params.get("bands") or [])
    absent = [b for b in need if b not in stack.bands]
    if absent:
        raise ValueError(
            f"the model at {model_path} uses band(s) {', '.join(map(str, need))} but the stack "
            f"{stack.path} has only {', '.join(stack.bands)} (missing {', '.join(absent)}); "
            "predict on a stack cut in those bands"
        )
    cal = model_meta.get("calibration") or {}
    if cal and tta is not None and bool(cal.get("tta")) != bool(tta):
        warn(
            f"the model at {model_path} was calibrated on probabilities "
            f"{'with' if cal.get('tta') else 'without'} test-time augmentation, and predicts "
            f"{'with' if tta else 'without'} it: averaging views makes probabilities less "
            "confident, so the calibration fits them less well; predict with "
            f"tta={bool(cal.get('tta'))}"
        )
    trained = fit_input.get("cutout_size")
    if trained and int(trained) != stack.size:
        warn(
            f"the model at {model_path} was trained on {trained} px cutouts but the stack "
            f"{stack.path} has {stack.size} px cutouts: they are resized to the model's input, "
            f"so objects appear {int(trained) / stack.size:.2g}x larger or smaller than in "
            "training; cut the stack at the training size (or the same angular size)"
        )


def _model_dir(model: Any, out: Path) -> str:
    """A saved model's directory, saving an in-memory estimator next to the output."""
    from catbuilder.models.saved import read_manifest, save_model

    if isinstance(model, (str, os.PathLike)):
        path = Path(model).resolve()
        read_manifest(path)  # a clear error when there is no saved model
        return str(path)
    path = out.parent / (out.name + ".model")
    save_model(model, path)
    return str(path.resolve())


def _digest(*parts: Any) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else repr(p).encode())
    return h.hexdigest()


def _unwritten_pieces(todo: np.ndarray, positions: np.ndarray, chunk: int) -> list:
    """``(start, stack positions)`` of the unwritten objects of each output chunk.

    Sorted, each is one contiguous run: a chunk's region is written whole
    before its mark.
    """
    groups = np.split(todo, np.flatnonzero(np.diff(todo // chunk)) + 1)
    return [(int(g[0]), positions[g[0] : g[-1] + 1]) for g in groups]


def _task_runs(items: list, n_threads: int, per_task: int | None) -> list[list]:
    """Group consecutive chunks into runs, one Dask task each.

    By default two runs per worker thread: few tasks, since a task's start
    (reading its first batch) is not overlapped with the model while later
    batches are, but enough that the load balances; at most 64 chunks a run.
    """
    if per_task is None:
        per_task = max(1, min(-(-len(items) // max(1, 2 * n_threads)), 64))
    return [items[i : i + per_task] for i in range(0, len(items), int(per_task))]


def predict(
    stack: Any,
    model: Any,
    *,
    output: str | os.PathLike[str] | None = None,
    cluster: Any = None,
    workers: int | None = None,
    batch_size: int | None = None,
    embed: bool | None = None,
    tta: bool | None = None,
    chunks_per_task: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Predictions:
    """Classify (and embed) every object of a stack on Dask workers.

    Parameters
    ----------
    stack
        An :class:`~catbuilder.stack.ImageStack` stored on disk (or its path);
        a selection of one predicts only the selected objects.
    model
        A saved model directory (from an estimator's ``save``) or a fitted
        estimator (saved next to the output so workers can load it). Each
        worker process loads it once and keeps it for every later task.
    output
        Zarr store for the results (default ``<stack>.predictions.zarr``).
    cluster, workers
        Where to run: see :func:`catbuilder.runtime.connect`; by default the
        active distributed client, else a LocalCluster on this machine;
        ``"sync"`` predicts in this process (inside a task of a larger run).
    batch_size
        Objects per model call (default ``infer.batch-size``).
    embed
        Also write embeddings (default ``infer.embed``).
    tta
        Average over flips and rotations (default ``infer.tta``).
    chunks_per_task
        Output chunks per Dask task (default ``infer.chunks-per-task``; null:
        two tasks per worker thread). Each chunk is written, and
        counted as done, as soon as it is predicted.
    overwrite
        Replace results made with other arguments (else an error); results
        made with the same arguments are completed, not redone.
    progress
        Show a progress bar over objects.

    Returns
    -------
    Predictions

    Examples
    --------
    >>> from catbuilder import build_catalog, predict
    >>> preds = predict("des.zarr", "small-cnn.model", workers=2)  # doctest: +SKIP
    >>> catalog = build_catalog(preds)  # doctest: +SKIP
    """
    from catbuilder.runtime import active_client, connect
    from catbuilder.stack.store import ImageStack

    if not isinstance(stack, ImageStack):
        stack = ImageStack.open(stack)
    if stack.path is None:
        raise ValueError("predict needs a stack stored on disk")
    out = Path(output) if output is not None else zs.sibling(stack.path, ".predictions.zarr")
    batch_size = int(config.resolve("infer.batch-size", batch_size))
    embed = bool(config.resolve("infer.embed", embed))
    tta = bool(config.resolve("infer.tta", tta))
    chunks_per_task = config.resolve("infer.chunks-per-task", chunks_per_task)
    model_path = _model_dir(model, out)
    positions = np.asarray(stack.ds["object"].values)
    if len(positions) == 0:
        raise ValueError("the stack (or selection) has no objects to predict")
    chunk = int(stack.meta["parameters"]["chunk_objects"])
    from catbuilder.models.saved import read_manifest

    model_meta = read_manifest(model_path)
    params = {
        "stack": str(Path(stack.path).resolve()),
        "positions_digest": _digest(np.ascontiguousarray(positions, dtype=np.int64)),
        "model": model_path,
        "weights": model_meta.get("weights_sha256") or _digest(model_meta),
        "embed": embed,
        "tta": tta,
        "batch_size": batch_size,
        "calibration": model_meta.get("calibration"),
    }
    check_model_fits_stack(model_meta, stack, model_path, tta)
    classes, n_feat = _output_shape(model_meta, model_path, embed)
    target, meta = zs.prepare(out, KIND, params, overwrite)
    todo = None if meta is None else np.flatnonzero(~zs.written(target))
    if todo is not None and not len(todo):
        pass  # complete: only its metadata is left to finish
    elif cluster == "sync":  # here, in this process (a task of a larger run, a debugger)
        if todo is None:
            meta = _template(target, stack, positions, chunk, classes, n_feat, params, model_meta)
            todo = np.arange(len(positions))
        run = _unwritten_pieces(todo, positions, chunk)
        _predict_chunks(os.path.abspath(stack.path), run, os.path.abspath(target), model_path,
                        batch_size, embed, tta)  # fmt: skip
    else:
        client = active_client() if cluster is None else None
        # the active client too goes through connect: it stays open, and its workers
        # are given their GPUs as those of a cluster connect makes
        ctx = connect(client, None) if client is not None else connect(cluster, workers)
        with ctx as c:
            if todo is None:  # a new store: its shape is the model's classes and width
                meta = _template(
                    target, stack, positions, chunk, classes, n_feat, params, model_meta
                )
                todo = np.arange(len(positions))
            pieces = _unwritten_pieces(todo, positions, chunk)
            nthreads = c.nthreads()
            tasks = _task_runs(pieces, sum(nthreads.values()) or 1, chunks_per_task)
            threads = max(nthreads.values(), default=1)
            with bind_workers(c, threads, config.get("infer.bind-cores")):
                _run(  # absolute paths: workers elsewhere have another working directory
                    c, tasks, os.path.abspath(stack.path), os.path.abspath(target), model_path,
                    batch_size, embed, tta, progress,
                )  # fmt: skip
    zs.finish(target, meta)
    zs.swap_in(target, out, KIND)
    return open_predictions(out)


def _template(out, stack, positions, chunk, classes, n_feat, params, model_meta) -> dict:
    """Write the empty output store (``compute=False``); return its metadata."""
    import dask.array as da
    import xarray as xr

    meta = {
        "kind": KIND,
        "complete": False,
        "parameters": params,
        "model": {
            "plugin": model_meta.get("plugin"),
            "distribution": model_meta.get("distribution"),
            "path": params["model"],
            "weights_sha256": model_meta.get("weights_sha256"),
            "versions": model_meta.get("versions", {}),
            "classes": classes,
        },
        "stack": {
            "path": params["stack"],
            "meta": {k: stack.meta.get(k) for k in ("parameters", "inputs", "versions")},
        },
    }
    n = len(positions)
    objid = zs.read_values(stack.ds["objid"])
    data = {
        "probabilities": (
            ("object", "class"),
            da.full((n, len(classes)), np.nan, dtype=np.float32, chunks=(chunk, -1)),
        ),
        "written": (("object",), da.zeros(n, dtype=bool, chunks=chunk)),
    }
    per_class = {  # the model's own probabilities beside calibrated ones; ensemble spread
        "raw_probabilities": bool(model_meta.get("calibration")),
        "member_std": bool(model_meta.get("ensemble_size")),
    }
    for name in (k for k, v in per_class.items() if v):
        data[name] = (
            ("object", "class"),
            da.full((n, len(classes)), np.nan, dtype=np.float32, chunks=(chunk, -1)),
        )
    if n_feat:
        data["embeddings"] = (
            ("object", "feature"),
            da.full((n, n_feat), np.nan, dtype=np.float32, chunks=(chunk, -1)),
        )
    ds = xr.Dataset(
        data,
        coords={
            "object": np.arange(n),
            "position": ("object", positions),
            "objid": ("object", objid.astype(object) if objid.dtype.kind in "TUSO" else objid),
            "class": np.array(classes, dtype=object),
        },
    )
    ds.attrs["catbuilder"] = meta
    zs.write_template(ds, out)  # written aside and renamed: a kill leaves no half store
    return meta


def _run(client, tasks, stack_path, out, model_path, batch_size, embed, tta, progress):
    from tqdm.auto import tqdm

    from catbuilder.runtime import run_windowed

    token = uuid.uuid4().hex[:8]

    def submit(idx: list[int]) -> list:
        return [
            client.submit(
                _predict_chunks,
                stack_path,
                tasks[i],
                out,
                model_path,
                batch_size,
                embed,
                tta,
                pure=False,
                key=f"catbuilder-predict-{tasks[i][0][0]}-{token}",
            )
            for i in idx
        ]

    total = sum(len(p) for pieces in tasks for _, p in pieces)
    with tqdm(total=total, desc="predict", unit="obj", disable=not progress) as bar:
        run_windowed(client, len(tasks), submit, done=bar.update)
