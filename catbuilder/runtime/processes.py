"""Worker processes that end with their parent, and whether a pool may fork."""

from __future__ import annotations

import os
import sys
import warnings

import dask


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

    from catbuilder.plugins import list_plugins

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # broken plugins are reported where they are used
        plugins = list_plugins()
    return {m for p in plugins.values() for m in p.fork_unsafe_modules}


def process_context(scheduler: str) -> dict:
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


def check_not_bootstrapping() -> None:
    """Refuse to start workers from a script that a new worker process is importing.

    Python starts worker processes with ``spawn`` (Dask's default; ours when
    TensorFlow is loaded), and a spawned process runs the main script again
    before it can work. Code that calls catbuilder at the top level of a
    script would then run in every worker; this stops it with a message
    that says what to do.

    Raises
    ------
    CatbuilderError
        When called while this process is still starting up as a worker.
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        from catbuilder.errors import CatbuilderError

        raise CatbuilderError(
            "this script is being run again by a worker process that catbuilder started "
            "(new processes import the main script): put the code that calls catbuilder "
            'under `if __name__ == "__main__":`'
        )


def release_freed_memory() -> bool:
    """Hand the memory this process has freed back to the operating system.

    glibc keeps freed heap memory for later allocations, so a worker that ran
    many large tasks in turn stays at the sum of their fragments even when
    nothing of them is alive. ``malloc_trim(0)`` returns it. A no-op (False)
    where the C library is not glibc.

    Returns
    -------
    bool
        Whether ``malloc_trim`` was called.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True
