"""Stopped runs: a build killed at any point resumes to a bit-identical stack,
an interrupted overwrite never loses the old stack, and no worker process
outlives its parent (SIGKILL, SIGTERM, Ctrl-C).

Each run is a real child process. Where a kill must land at an exact point
(inside the template write, between a chunk's pixels and its mark, before
consolidation), the child wraps that one function to SIGKILL itself there:
the kill is real, only its timing is arranged.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import psutil
import pytest
from astropy.io import fits
from test_bad_input import SIZE, _header, _pixels, _sources

from catbuilder.stack import build_stack, open_stack

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    point, n, sources, tiles, out, size, overwrite, scheduler = sys.argv[1:9]
    n, size = int(n), int(size)
    import catbuilder.stack.build as b

    count = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if point == "template":
        from zarr.storage import LocalStore

        orig_set = LocalStore.set

        async def set_(self, key, value, *a, **k):
            if ".catbuilder-tmp-template-" in str(self.root):
                count[0] += 1
                if count[0] == n:
                    die()
            return await orig_set(self, key, value, *a, **k)

        LocalStore.set = set_
    elif point == "chunk":
        import catbuilder.zarr_store as zs

        orig_mark = zs.mark_written

        def mark(group, region):
            count[0] += 1
            if count[0] == n:
                die()
            return orig_mark(group, region)

        zs.mark_written = mark
    elif point == "consolidate":
        import catbuilder.zarr_store as zs

        zs.consolidate = lambda path: die()
    elif point == "finish":  # every chunk written and marked; the store not yet complete
        b.finish_build = lambda *a, **k: die()
    elif point == "slow":  # forked workers inherit this: each chunk takes a second
        orig_extract = b.extract_chunk

        def slow(*a, **k):
            time.sleep(1.0)
            return orig_extract(*a, **k)

        b.extract_chunk = slow
    if point == "cli":
        pass
    from catbuilder.stack import build_stack

    build_stack(sources, tiles, out, size=size, chunk_objects=1, cluster=scheduler,
                progress=False, overwrite=overwrite == "1")
    print("finished")
    """
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    (root / "tiles").mkdir()
    for k, band in enumerate("gri"):
        fits.PrimaryHDU(_pixels(k), _header(band)).writeto(root / "tiles" / f"T1_{band}.fits")
    _sources().to_parquet(root / "sources.parquet")
    return root


def _child(inputs, point, n, out, size=SIZE, overwrite=False, scheduler="sync", **kw):
    src, tiles, ow = str(inputs / "sources.parquet"), str(inputs / "tiles"), str(int(overwrite))
    args = [sys.executable, "-c", CHILD, point, str(n), src, tiles, str(out), str(size), ow,
            scheduler]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _reference(inputs, tmp_path, size=SIZE):
    return build_stack(
        inputs / "sources.parquet", inputs / "tiles", tmp_path / f"ref{size}.zarr", size=size,
        chunk_objects=1, cluster="sync", progress=False,
    )  # fmt: skip


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.images.values, b.images.values)
    pd.testing.assert_frame_equal(a.objects(), b.objects())


@pytest.mark.parametrize(
    ("point", "n"),
    [
        ("template", 1),
        ("template", 6),
        ("chunk", 1),
        ("chunk", 3),
        ("finish", 1),
        ("consolidate", 1),
    ],
    ids=[
        "template-start",
        "template-middle",
        "first-chunk",
        "middle",
        "last-chunk",
        "consolidation",
    ],
)
def test_a_build_killed_anywhere_resumes_bit_identical(point, n, inputs, tmp_path):
    out = tmp_path / "s.zarr"
    proc = _child(inputs, point, n, out)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    resumed = build_stack(
        inputs / "sources.parquet", inputs / "tiles", out, size=SIZE, chunk_objects=1,
        cluster="sync", progress=False,
    )  # fmt: skip
    _same(resumed, _reference(inputs, tmp_path))
    assert [p.name for p in tmp_path.iterdir() if "catbuilder-tmp" in p.name] == []
    actions = [h["action"] for h in resumed.meta["history"]]
    assert actions[0] == "build" and (point != "chunk" or actions[-1] == "resume")


def test_an_interrupted_overwrite_keeps_the_old_stack_until_the_new_one_is_complete(
    inputs, tmp_path
):
    out = tmp_path / "s.zarr"
    old = _reference(inputs, tmp_path)
    os.rename(old.path, out)
    proc = _child(inputs, "chunk", 3, out, size=20, overwrite=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err
    assert open_stack(out).size == SIZE  # the old stack is whole and readable
    new = build_stack(
        inputs / "sources.parquet", inputs / "tiles", out, size=20, chunk_objects=1,
        cluster="sync", progress=False, overwrite=True,
    )  # fmt: skip
    _same(new, _reference(inputs, tmp_path, size=20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref20.zarr", "s.zarr"]


def _children_of(pid: int, at_least: int, timeout: float = 60) -> list[psutil.Process]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            kids = psutil.Process(pid).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        if len(kids) >= at_least:
            return kids
        time.sleep(0.1)
    raise AssertionError(f"process {pid} did not start {at_least} worker(s)")


def _all_gone(procs: list[psutil.Process], timeout: float = 10) -> bool:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        p.kill()
    return not alive


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_process_pool_workers_end_with_their_parent(sig, inputs, tmp_path):
    proc = _child(inputs, "slow", 0, tmp_path / "s.zarr", scheduler="processes")
    workers = _children_of(proc.pid, 2)
    time.sleep(0.5)
    os.kill(proc.pid, sig)
    proc.communicate(timeout=30)
    assert _all_gone(workers), "worker processes outlived their parent"


def test_ctrl_c_is_one_line_ends_the_workers_and_leaves_a_resumable_stack(inputs, tmp_path):
    out = tmp_path / "s.zarr"
    script = CHILD.replace(
        'if point == "cli":\n    pass',
        'if point == "cli":\n'
        "    from catbuilder.cli import main\n"
        "    sys.exit(main(['cutouts', sources, tiles, '-o', out, '--size', str(size),\n"
        "                   '--chunk-objects', '1', '--no-progress']))",
    ).replace('elif point == "slow":', 'if point in ("slow", "cli"):')
    args = [sys.executable, "-c", script, "cli", "0", str(inputs / "sources.parquet"),
            str(inputs / "tiles"), str(out), str(SIZE), "0", "processes"]  # fmt: skip
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    workers = _children_of(proc.pid, 2)
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        "catbuilder cutouts: interrupted; finished work is kept: run the same command again "
        "to resume"
    )
    assert _all_gone(workers)
    resumed = build_stack(
        inputs / "sources.parquet", inputs / "tiles", out, size=SIZE, chunk_objects=1,
        cluster="sync", progress=False,
    )  # fmt: skip
    _same(resumed, _reference(inputs, tmp_path))


def test_dask_workers_end_with_the_process_that_started_them(tmp_path):
    script = textwrap.dedent(
        """
        import time
        from distributed import Client
        from catbuilder.runtime import make_cluster
        cluster = make_cluster("local", 2, threads_per_worker=1)
        client = Client(cluster)
        client.wait_for_workers(2)
        print("ready", flush=True)
        time.sleep(300)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    workers = _children_of(proc.pid, 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _all_gone(workers, timeout=20), "dask workers outlived the client process"


APPEND_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    n, stack, sources, tiles = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    import catbuilder.stack.append as a
    from zarr.storage import LocalStore

    armed, count = [False], [0]
    orig_template, orig_set = a.stack_template, LocalStore.set

    def template(*a, **k):
        armed[0] = True  # count the writes of the append's template only
        return orig_template(*a, **k)

    async def set_(self, key, value, *a, **k):
        if armed[0]:
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return await orig_set(self, key, value, *a, **k)

    a.stack_template, LocalStore.set = template, set_
    from catbuilder.stack import append_to_stack

    append_to_stack(stack, sources, tiles, cluster="sync", progress=False)
    """
)


@pytest.mark.parametrize("n", [1, 5, 12])
def test_an_append_killed_inside_its_template_write_rolls_back_and_finishes(n, inputs, tmp_path):
    from catbuilder.errors import IncompleteStoreError
    from catbuilder.stack import append_to_stack

    src = pd.read_parquet(inputs / "sources.parquet")
    first, rest = tmp_path / "first.parquet", tmp_path / "rest.parquet"
    src.iloc[:3].to_parquet(first)
    src.iloc[3:].to_parquet(rest)
    stacks = {}
    for name in ("killed", "clean"):
        stacks[name] = build_stack(
            first, inputs / "tiles", tmp_path / f"{name}.zarr", size=SIZE, chunk_objects=2,
            cluster="sync", progress=False,
        ).path  # fmt: skip
    args = [sys.executable, "-c", APPEND_CHILD, str(n), str(stacks["killed"]), str(rest),
            str(inputs / "tiles")]  # fmt: skip
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with pytest.raises(IncompleteStoreError, match="run the same append again"):
        open_stack(stacks["killed"])
    done = append_to_stack(stacks["killed"], rest, inputs / "tiles", cluster="sync", progress=False)
    clean = append_to_stack(stacks["clean"], rest, inputs / "tiles", cluster="sync", progress=False)
    assert len(done) == 5
    _same(done, clean)
