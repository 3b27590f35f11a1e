"""Run Dask collections with a progress bar on whatever scheduler is active."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask

__all__ = ["active_client", "compute"]


def active_client() -> Any | None:
    """The current :class:`distributed.Client`, or None when there is none."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def compute(
    tasks: Sequence[Any],
    *,
    scheduler: str | None = None,
    progress: bool = True,
    desc: str = "",
    unit: str = "task",
) -> list[Any]:
    """Compute ``tasks`` (Dask delayed objects) and return their results in order.

    With an active distributed client (and no explicit ``scheduler``), tasks run
    on its cluster; otherwise on ``scheduler`` (default ``"processes"``). A
    tqdm bar counts finished tasks when ``progress`` is true.
    """
    from tqdm.auto import tqdm

    client = active_client() if scheduler is None else None
    if client is not None:
        from distributed import as_completed

        futures = client.compute(list(tasks))
        try:
            with tqdm(total=len(futures), desc=desc, unit=unit, disable=not progress) as bar:
                for _ in as_completed(futures):
                    bar.update(1)
            return client.gather(futures)
        finally:
            for f in futures:
                f.release()
    scheduler = scheduler or "processes"
    with dask.config.set(_process_context(scheduler)):
        if progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=desc, unit=unit):
                return list(dask.compute(*tasks, scheduler=scheduler))
        return list(dask.compute(*tasks, scheduler=scheduler))


def _process_context(scheduler: str) -> dict:
    """Fork worker processes where that is safe.

    Dask's process pool spawns by default, which re-imports ``__main__``: an
    analysis script without an ``if __name__ == "__main__"`` guard would then
    crash. Forking avoids that, and is safe on Linux as long as no library
    with its own thread pools (TensorFlow) is loaded in this process.
    """
    import sys

    if scheduler != "processes" or not sys.platform.startswith("linux"):
        return {}
    if any(m in sys.modules for m in ("tensorflow", "torch", "jax")):
        return {}
    if (
        "multiprocessing.context" in dask.config.config.get("multiprocessing", {})
        and dask.config.get("multiprocessing.context") != "spawn"
    ):
        return {}
    return {"multiprocessing.context": "fork"}
