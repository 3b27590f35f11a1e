"""``catbuilder demo``: the packaged pipeline file ``demo.yaml`` run on a mock survey.

The paper's workflow (Khan, Huerta et al. 2019) in miniature, every step a
public API call that a script could make the same way:

1. a GalSim mock of two surveys of one sky (``sdss-like`` with Galaxy-Zoo-like
   votes, ``des-like`` deeper and wider, with an unlabelled area);
2. the Galaxy Zoo high-probability labels carried onto the ``des-like``
   sources by crossmatch;
3. g,r,i cutouts of every ``des-like`` source into a chunked Zarr stack;
4. a small CNN trained on the labelled training split;
5. inference over every object on a Dask LocalCluster, into a catalog
   (Parquet) with class probabilities, embeddings, anomaly scores and flags;
6. evaluation on the held-out test split (metrics, ROC, the paper's
   "top-half" confidence figures, a gallery of the most confidently wrong),
   a t-SNE map of the embeddings with thumbnails, and ``report.html``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["demo", "demo_file"]


def demo_file() -> Path:
    """The packaged pipeline file the demo runs."""
    return Path(__file__).with_name("demo.yaml")


def demo(
    outdir: str | Path = "catbuilder-demo",
    n_objects: int = 600,
    seed: int = 42,
    *,
    epochs: int = 12,
    workers: int | None = 2,
    cluster: str | None = None,
    progress: bool = True,
):
    """Run catbuilder end to end on a mock survey it makes itself.

    Parameters
    ----------
    outdir
        The run's work directory; a second call finds every step complete and
        does nothing, an interrupted one carries on.
    n_objects
        Size of the mock survey (both presets together).
    seed
        Random seed of the survey.
    epochs
        Training epochs of the small CNN.
    workers
        Dask worker processes (a LocalCluster on 127.0.0.1).
    cluster
        Where the run's Dask work goes instead: a dask-jobqueue name
        (``"slurm"``, configured as usual) or a scheduler address.
    progress
        Show progress bars and a line per step.

    Returns
    -------
    PipelineResult

    Examples
    --------
    >>> import catbuilder
    >>> result = catbuilder.demo("demo-run")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    """
    from catbuilder.pipeline.run import Pipeline

    if int(n_objects) < 10:
        raise ValueError(f"n_objects (--n-objects) is {n_objects}; a mock survey needs at least 10")
    if int(epochs) < 1:
        raise ValueError(f"epochs (--epochs) is {epochs}; train for at least 1")

    overrides = {
        "mock": {"n-objects": int(n_objects), "seed": int(seed)},
        "model": {"params": {"epochs": int(epochs)}},
        "cluster": {"workers": workers, **({"kind": cluster} if cluster else {})},
    }
    pipe = Pipeline.from_yaml(demo_file(), workdir=outdir, overrides=overrides, progress=progress)
    return pipe.run()
