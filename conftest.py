"""Shared fixtures for the core's and the plugins' tests: small mock surveys,
stacks and models made once per test session, a real SLURM, a LocalCluster."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# no LocalCluster dashboards in tests (nor in the commands they start)
os.environ.setdefault("CATBUILDER_CLUSTER__DASHBOARD", "None")


@pytest.fixture(scope="session", autouse=True)
def _nannies_outlive_the_lost_worker_timer():
    """Keep a cluster's nannies when a test kills their worker on purpose.

    distributed's SpecCluster (LocalCluster, dask-jobqueue) arms a timer each
    time a worker leaves (``distributed.deploy.lost-worker-timeout``, 15 s);
    when it fires it closes, for good, the nanny of that worker's name unless
    a worker of that name is connected at that instant. A worker restarted
    (as a failed distributed fit restarts its ranks' workers) and killed by
    the next test just before the timer fires loses its nanny: the cluster
    stays a worker short (reproduced with a 3 s timer and a kill 2.97 s after
    a restart). The tests that kill workers are about
    catbuilder's recovery, not that timer, so it outlasts the session.
    """
    import dask

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "2h"}):
        yield


@pytest.fixture(scope="session")
def mock_survey(tmp_path_factory):
    """Both presets, 120 objects, rendered on Dask's process scheduler."""
    from catbuilder.synth import make_survey

    root = tmp_path_factory.mktemp("mock")
    return make_survey(root, n_objects=120, seed=7, progress=False)


@pytest.fixture(scope="session")
def des_stack(mock_survey, tmp_path_factory):
    """The des-like survey of ``mock_survey`` cut into a 32 px stack, 16 objects a chunk."""
    from catbuilder.stack import build_stack

    out = tmp_path_factory.mktemp("stack") / "des.zarr"
    files = mock_survey["des-like"]
    return build_stack(
        files.sources, files.directory / "tiles", out, size=32, chunk_objects=16, progress=False
    )


@pytest.fixture
def tile_copy(mock_survey, tmp_path):
    """A writable copy of the des-like tiles and sources."""
    import shutil

    files = mock_survey["des-like"]
    dst = tmp_path / "tiles"
    shutil.copytree(files.directory / "tiles", dst)
    return dst, files.read_sources()


@pytest.fixture(scope="session")
def hp_survey(tmp_path_factory):
    """A des-like survey big enough for a Galaxy Zoo high-probability sample."""
    from catbuilder.synth import make_survey

    return make_survey(
        tmp_path_factory.mktemp("hp"), presets="des-like", n_objects=1800, seed=21, progress=False
    )


@pytest.fixture(scope="session")
def hp_stack(hp_survey, tmp_path_factory):
    """Galaxy Zoo HP labels crossmatched onto des-like sources, cut at 64 px."""
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack

    table = label_sources(hp_survey.read_labels(), hp_survey["des-like"].sources)
    out = tmp_path_factory.mktemp("hpstack") / "hp.zarr"
    return build_stack(
        table,
        hp_survey["des-like"].directory / "tiles",
        out,
        size=64,
        chunk_objects=64,
        progress=False,
    )


@pytest.fixture(scope="session")
def fo_stack(hp_survey, tmp_path_factory):
    """Every Galaxy Zoo galaxy labelled by its larger vote fraction (the "fo"
    sample), 200 of them cut at 32 px."""
    from catbuilder.sky import label_sources
    from catbuilder.stack import build_stack

    table = label_sources(hp_survey.read_labels(), hp_survey["des-like"].sources, sample="fo")
    out = tmp_path_factory.mktemp("fo") / "fo.zarr"
    return build_stack(table.iloc[:200], hp_survey["des-like"].directory / "tiles", out,
                       size=32, chunk_objects=64, progress=False)  # fmt: skip


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real SLURM controller and three nodes on localhost, for @pytest.mark.slurm tests.

    ``SLURM_CONF`` is set for the session so dask-jobqueue's sbatch/squeue/scancel
    find it; the daemons are stopped (by pid) at the end.
    """
    from slurm_localhost import LocalSlurm

    s = LocalSlurm(tmp_path_factory.mktemp("slurm"), nodes=3).start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = s.env["SLURM_CONF"]
    yield s
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
    s.stop()


@pytest.fixture(scope="session")
def small_model(hp_stack, tmp_path_factory):
    """A small CNN trained briefly on the HP stack, saved; its directory."""
    from catbuilder.training import train

    root = tmp_path_factory.mktemp("model")
    res = train(
        hp_stack,
        "keras.small-cnn",
        checkpoint_dir=root / "ck",
        params={
            "batch_size": 32,
            "input_size": 32,
            "stages": "whole-network",
            "epochs": 4,
        },
    )
    return res.model.save(root / "small-cnn.model")


@pytest.fixture(scope="session")
def dask_client():
    """A LocalCluster of two one-thread worker processes on 127.0.0.1."""
    from distributed import Client

    from catbuilder.runtime import make_cluster

    cluster = make_cluster("local", 2, threads_per_worker=1)
    client = Client(cluster)
    client.wait_for_workers(2)
    yield client
    client.close()
    cluster.close()


#: fixtures that need more than a pip install, and the marker their tests carry,
#: so that `pytest -m "not root and not horovod and not browser"` (docs/install.md)
#: selects every test a user without root can run, and none it cannot
_NEEDS = {"slurm": "root", "mount": "root"}


def pytest_collection_modifyitems(config, items):
    missing = [
        f"{item.nodeid} uses {name} but is not marked {marker}"
        for item in items
        for name, marker in _NEEDS.items()
        if name in getattr(item, "fixturenames", ()) and item.get_closest_marker(marker) is None
    ]
    if missing:
        raise pytest.UsageError("; ".join(missing))
