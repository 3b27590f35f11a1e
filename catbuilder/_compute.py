"""Run Dask collections with a progress bar on whatever scheduler is active."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Sequence
from typing import Any

import dask

__all__ = ["active_client", "check_scheduler", "compute", "end_with_parent", "is_address"]


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


def is_address(scheduler: str | None) -> bool:
    """Whether ``scheduler`` names a distributed scheduler (``tcp://host:port``, ``host:port``)."""
    if not isinstance(scheduler, str):
        return False
    if "://" in scheduler:
        return True
    host, _, port = scheduler.rpartition(":")
    return bool(host) and port.isdigit()


_LOCAL = {"processes", "threads", "sync", "synchronous", "single-threaded"}


def check_scheduler(scheduler: str | None) -> None:
    """Fail early (before any output is written) on a scheduler that cannot run tasks.

    Raises
    ------
    ValueError
        For an unknown scheduler name, or an address where no scheduler answers.
    """
    if scheduler is None or scheduler in _LOCAL:
        return
    if not is_address(scheduler):
        raise ValueError(
            f"unknown scheduler {scheduler!r}: use one of {', '.join(sorted(_LOCAL))} or a "
            "scheduler address such as tcp://127.0.0.1:8786"
        )
    from distributed import Client

    try:
        Client(scheduler, timeout="10s", set_as_default=False).close()
    except OSError as err:
        raise ValueError(
            f"cannot reach a Dask scheduler at {scheduler}: {err}; check the address, "
            "or use processes, threads or sync"
        ) from None


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
    on its cluster; a scheduler address (``tcp://host:port``) connects to that
    cluster for the call; otherwise they run on ``scheduler`` (default
    ``"processes"``: a process pool whose workers end when this process
    ends, and leave Ctrl-C to it). A tqdm bar counts finished tasks when
    ``progress`` is true.
    """
    if is_address(scheduler):
        from distributed import Client

        try:
            client = Client(scheduler, timeout="10s", set_as_default=False)
        except OSError as err:
            raise ValueError(
                f"cannot reach a Dask scheduler at {scheduler}: {err}; check the address, "
                "or use processes, threads or sync"
            ) from None
        with client:
            return _on_client(client, tasks, progress, desc, unit)
    client = active_client() if scheduler is None else None
    if client is not None:
        return _on_client(client, tasks, progress, desc, unit)
    scheduler = scheduler or "processes"
    check_scheduler(scheduler)
    kwargs: dict[str, Any] = {"scheduler": scheduler}
    if scheduler == "processes":
        kwargs["initializer"] = functools.partial(end_with_parent, os.getpid())
    with dask.config.set(_process_context(scheduler)):
        if progress:
            from tqdm.dask import TqdmCallback

            with TqdmCallback(desc=desc, unit=unit):
                return list(dask.compute(*tasks, **kwargs))
        return list(dask.compute(*tasks, **kwargs))


def _on_client(client, tasks, progress: bool, desc: str, unit: str) -> list[Any]:
    from distributed import as_completed
    from tqdm.auto import tqdm

    futures = client.compute(list(tasks))
    try:
        with tqdm(total=len(futures), desc=desc, unit=unit, disable=not progress) as bar:
            for _ in as_completed(futures):
                bar.update(1)
        return client.gather(futures)
    finally:
        for f in futures:
            f.release()


def end_with_parent(parent_pid: int) -> None:
    """Worker-process initializer: end this process when ``parent_pid`` ends.

    On Linux the kernel sends SIGKILL when the parent dies
    (``prctl(PR_SET_PDEATHSIG)``), whatever killed it; elsewhere a daemon
    thread polls the parent. Ctrl-C is ignored here: the parent handles it
    and shuts the pool down, so a terminal shows one message, not one
    traceback per worker.
    """
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before we were armed
        os._exit(1)
    if not armed:

        def watch() -> None:
            import time

            while os.getppid() == parent_pid:
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, name="catbuilder-parent-watch", daemon=True).start()


def _fork_unsafe_modules() -> set[str]:
    import warnings

    from catbuilder.plugins import list_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken plugins are reported where they are used
        plugins = list_plugins()
    return {m for p in plugins.values() for m in p.fork_unsafe_modules}


def _process_context(scheduler: str) -> dict:
    """Fork worker processes where that is safe.

    Dask's process pool spawns by default, which re-imports ``__main__``: an
    analysis script without an ``if __name__ == "__main__"`` guard would then
    crash. Forking avoids that, and is safe on Linux as long as no module
    that starts native thread pools at import is loaded (a child would
    inherit their locks but not their threads): model plugins name theirs
    (:attr:`catbuilder.plugins.ModelPlugin.fork_unsafe_modules`).
    """
    if scheduler != "processes" or not sys.platform.startswith("linux"):
        return {}
    if any(m in sys.modules for m in _fork_unsafe_modules()):
        return {}
    if (
        "multiprocessing.context" in dask.config.config.get("multiprocessing", {})
        and dask.config.get("multiprocessing.context") != "spawn"
    ):
        return {}
    return {"multiprocessing.context": "fork"}
