"""dask-jobqueue on a real SLURM of three nodes on this machine (the ``slurm`` fixture)."""

import json
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest
from train_params import small_cnn_params

from catbuilder import config
from catbuilder.runtime import workers_now
from catbuilder.training import train
from catbuilder.training.distributed import DistributedTrainingError

pytestmark = [pytest.mark.slurm, pytest.mark.root, pytest.mark.horovod, pytest.mark.slow]


def jobqueue_settings(slurm, tmp_path) -> dict:
    """dask-jobqueue's keyword arguments for the test SLURM: one-core jobs."""
    return {
        "cores": 1,
        "memory": "2GB",
        "processes": 1,
        "queue": slurm.partition,
        "walltime": "00:30:00",
        "python": sys.executable,
        "job_extra_directives": ["--oversubscribe"],
        "log_directory": str(tmp_path / "logs"),
        "local_directory": str(tmp_path / "work"),
    }


@pytest.fixture
def jobqueue(slurm, tmp_path):
    """catbuilder's cluster configuration for the test SLURM, on loopback."""
    settings = {
        "cluster.kind": "slurm",
        "cluster.interface": "lo",
        "cluster.jobqueue": jobqueue_settings(slurm, tmp_path),
    }
    with config.set(settings):
        yield settings


def test_slurm_daemons_listen_on_loopback_only(slurm):
    res = slurm.run("srun", "-n1", "hostname")
    assert res.returncode == 0, res.stderr
    pid_files = [slurm.root / "slurmctld.pid"]
    pid_files += [slurm.slurmd_pid_file(n) for n in slurm.node_names]
    assert len(pid_files) == 4  # the controller and three nodes
    for name in pid_files:
        pid = int(name.read_text())
        listening = [
            c.laddr.ip
            for c in psutil.Process(pid).net_connections("inet")
            if c.status == psutil.CONN_LISTEN
        ]
        assert listening and all(ip == "127.0.0.1" for ip in listening), (name, listening)


def test_two_ranks_on_slurm_jobs(hp_stack, jobqueue, slurm, tmp_path):
    res = train(
        hp_stack,
        "keras.small-cnn",
        params=small_cnn_params(2),
        cluster="slurm",
        workers=2,
        checkpoint_dir=tmp_path / "ck",
    )
    ranks = res.model.ranks_
    assert [r["rank"] for r in ranks] == [0, 1]
    assert ranks[0]["weights_digest"] == ranks[1]["weights_digest"]
    assert len(res.history) == 2 and res.history["loss"].iloc[-1] < res.history["loss"].iloc[0]
    # the jobs went away with the cluster
    deadline = time.time() + 60
    while time.time() < deadline and slurm.run("squeue", "-h").stdout.strip():
        time.sleep(1)
    assert slurm.run("squeue", "-h").stdout.strip() == ""


def test_a_cancelled_job_resumes_from_its_checkpoint(hp_stack, jobqueue, slurm, tmp_path):
    ck = tmp_path / "ck"

    def cancel_when_training():
        deadline = time.time() + 300
        while time.time() < deadline:
            if (ck / "state.json").exists():
                ids = slurm.run("squeue", "-h", "-o", "%i").stdout.split()
                slurm.run("scancel", *ids)
                return
            time.sleep(0.2)

    threading.Thread(target=cancel_when_training, daemon=True).start()
    with pytest.raises(DistributedTrainingError, match=r"rank \d died"):
        train(
            hp_stack,
            "keras.small-cnn",
            params=small_cnn_params(6),
            cluster="slurm",
            workers=2,
            checkpoint_dir=ck,
        )
    stopped = json.loads((ck / "state.json").read_text())
    assert not stopped["done"] and 1 <= stopped["epoch"] < 6
    res = train(
        hp_stack,
        "keras.small-cnn",
        params=small_cnn_params(6),
        cluster="slurm",
        workers=2,
        checkpoint_dir=ck,
    )
    assert res.history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert [r["seconds"] for r in stopped["history"]] == res.history["seconds"].tolist()[
        : stopped["epoch"]
    ]


def test_cli_trains_from_a_run_file_on_slurm(hp_stack, jobqueue, slurm, tmp_path):
    run = tmp_path / "run.yaml"
    jq = dict(jobqueue["cluster.jobqueue"])
    run.write_text(
        json.dumps(
            {
                "stack": str(hp_stack.path),
                "model": "keras.small-cnn",
                "output": "model",
                "params": small_cnn_params(1),
                "catbuilder": {"cluster": {"interface": "lo", "jobqueue": jq}},
            }
        )
    )
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "catbuilder.cli",
            "train",
            str(run),
            "--cluster",
            "slurm",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        env=slurm.env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "model saved to" in res.stdout
    meta = json.loads((tmp_path / "model" / "catbuilder-model.json").read_text())
    assert meta["plugin"] == "keras.small-cnn"


def test_pipeline_file_runs_its_steps_on_slurm_jobs(mock_survey, small_model, slurm, tmp_path):
    """``catbuilder run`` with ``cluster: {kind: slurm}``: cutouts and inference in
    SLURM jobs; the jobs are gone when the run ends; a rerun keeps everything."""
    import yaml

    des = mock_survey["des-like"]
    spec = {
        "name": "on-slurm",
        "inputs": {
            "tiles": str(des.directory / "tiles"),
            "sources": str(des.sources),
            "labels": str(mock_survey.labels),
        },
        "model": {"saved": str(small_model)},
        "embeddings": {"anomaly": True},
        "cutouts": {"size": 32},
        "cluster": {
            "kind": "slurm",
            "workers": 1,
            "interface": "lo",
            "jobqueue": jobqueue_settings(slurm, tmp_path),
        },
    }
    path = tmp_path / "slurm.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**slurm.env, "PATH": os.environ["PATH"]}
    cmd = [sys.executable, "-m", "catbuilder.cli", "run", str(path), "--no-progress"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    wd = tmp_path / "slurm-run"
    log = (wd / "run.log").read_text()
    assert "cluster: <Client: 'tcp://127.0.0.1:" in log  # the jobqueue scheduler, on loopback
    assert "train" not in json.loads((wd / "manifest.json").read_text())["steps"]
    assert list((tmp_path / "logs").glob("*.err"))  # workers ran as SLURM jobs
    import pandas as pd

    cat = pd.read_parquet(wd / "catalog.parquet")
    assert sorted(cat["objid"]) == sorted(pd.read_parquet(des.sources)["objid"])
    assert cat.loc[cat["flags"] == 0, "predicted"].notna().all()
    deadline = time.time() + 60
    while time.time() < deadline and slurm.run("squeue", "-h").stdout.strip():
        time.sleep(1)
    assert slurm.run("squeue", "-h").stdout.strip() == ""
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and again.stdout.count(" kept ") == 8, (
        again.stdout
    )  # no mock, no train


def test_slurm_workers_speak_tls_to_the_scheduler(slurm, tmp_path):
    """``cluster.security: temporary`` on SLURM: the jobs get the certificate through
    jobqueue's shared_temp_directory and connect over tls://."""
    import dask

    from catbuilder.runtime import compute, connect, job_script

    settings = {
        "cluster.kind": "slurm",
        "cluster.interface": "lo",
        "cluster.security": "temporary",
        "cluster.jobqueue": {
            **jobqueue_settings(slurm, tmp_path),
            "shared_temp_directory": str(tmp_path / "shared"),
        },
    }
    (tmp_path / "shared").mkdir()
    with config.set(settings):
        assert "--tls" not in job_script()  # a preview makes no certificate
        with connect("slurm", 1) as client:
            assert client.scheduler.address.startswith("tls://127.0.0.1:")
            worker = next(iter(workers_now(client)))
            assert worker.startswith("tls://")
            tasks = [dask.delayed(pow)(i, 3) for i in range(4)]  # importable on any worker
            assert compute(tasks, cluster=client, progress=False) == [0, 1, 8, 27]
            script = client.cluster.job_script()
        assert "--tls-ca-file" in script and str(tmp_path / "shared") in script
    deadline = time.time() + 60
    while time.time() < deadline and slurm.run("squeue", "-h").stdout.strip():
        time.sleep(1)
    assert slurm.run("squeue", "-h").stdout.strip() == ""


def _kill_one_node_midway(slurm, store, node: str, events: dict) -> threading.Thread:
    """Watch ``store``'s per-object written marks; once some but not all objects
    are written, SIGKILL the SLURM job running on ``node`` (its worker dies as
    on a node that fails)."""
    from catbuilder.zarr_store import written

    def watch():
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                done = written(store)
            except Exception:  # the store is not there yet
                time.sleep(0.05)
                continue
            if 0 < done.sum() < 0.5 * done.size:
                job = slurm.run("squeue", "-h", "-w", node, "-o", "%i").stdout.split()
                if job:
                    slurm.run("scancel", "--signal=KILL", "--full", job[0])
                    events["killed"] = (job[0], int(done.sum()), int(done.size))
                    return
            elif done.size and done.sum() >= 0.5 * done.size:
                events["missed"] = int(done.sum())
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_a_node_lost_midway_leaves_the_cutouts_and_predictions_complete_and_identical(
    slurm, tmp_path
):
    """Workers on three SLURM nodes; one node's job is killed while the cutouts are
    written, another's while predictions are: both stores are complete and equal
    to the same work done in this process."""
    import numpy as np

    from benchmarks import fitted_model, positions, write_tiles
    from catbuilder.infer import predict
    from catbuilder.runtime import connect
    from catbuilder.stack import build_stack, open_stack

    write_tiles(tmp_path / "tiles", n_side=2, npix=1024)
    sources = positions(12_000, n_side=2, npix=1024)
    model = fitted_model("keras.small-cnn", 32, tmp_path, cutout=32)
    settings = {
        "cluster.kind": "slurm",
        "cluster.interface": "lo",
        # one core per job, on one-core nodes: the three jobs land on three nodes
        "cluster.jobqueue": {**jobqueue_settings(slurm, tmp_path), "job_extra_directives": []},
        # a chunk of 100 a task (below): the marks come a few at a time over
        # about a second, a window the watcher cannot miss
        "cutouts.chunks-per-task": 1,
    }
    events: dict = {}
    with config.set(settings), connect("slurm", 3) as client:
        client.wait_for_workers(3, timeout=120)
        nodes = slurm.run("squeue", "-h", "-o", "%N").stdout.split()
        assert sorted(nodes) == ["node0", "node1", "node2"]  # one worker job per node
        watcher = _kill_one_node_midway(slurm, tmp_path / "s.zarr", "node1", events)
        stack = build_stack(
            sources,
            tmp_path / "tiles",
            tmp_path / "s.zarr",
            size=32,
            chunk_objects=100,
            cluster=client,
            progress=False,
        )
        watcher.join()
        assert "killed" in events, events  # the kill came while cutting
        cut_kill = events.pop("killed")
        watcher = _kill_one_node_midway(slurm, tmp_path / "p.zarr", "node2", events)
        preds = predict(
            stack,
            model,
            output=tmp_path / "p.zarr",
            cluster=client,
            batch_size=64,
            chunks_per_task=1,
            tta=True,  # eight views an object: a window the watcher cannot miss
            progress=False,
        )
        watcher.join()
        assert "killed" in events, events  # the kill came while predicting
    print("killed", cut_kill, events["killed"])

    reference = build_stack(
        sources,
        tmp_path / "tiles",
        tmp_path / "ref.zarr",
        size=32,
        chunk_objects=200,  # chunked otherwise: the pixels do not depend on it
        cluster="sync",
        progress=False,
    )
    got, want = open_stack(tmp_path / "s.zarr"), open_stack(reference.path)
    assert got.meta["complete"]
    np.testing.assert_array_equal(got.objects()["objid"], want.objects()["objid"])
    np.testing.assert_array_equal(got.load(), want.load())
    ref_preds = predict(  # workers with the SLURM jobs' thread settings: the same sums
        reference,
        model,
        output=tmp_path / "ref-p.zarr",
        cluster="local",
        workers=1,
        batch_size=64,
        tta=True,
        progress=False,
    )
    assert preds.meta["complete"] and len(preds) == len(sources)
    np.testing.assert_array_equal(preds.ds["objid"].values, ref_preds.ds["objid"].values)
    np.testing.assert_array_equal(preds.probabilities(), ref_preds.probabilities())
