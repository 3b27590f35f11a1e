"""End-to-end runs: ``catbuilder demo`` on an embedded synthetic survey."""

from __future__ import annotations

from pathlib import Path

__all__ = ["demo"]


def demo(
    outdir: str | Path = "catbuilder-demo",
    n_objects: int = 400,
    seed: int = 42,
    progress: bool = True,
) -> dict:
    """Run catbuilder end to end on a mock survey it makes itself.

    Parameters
    ----------
    outdir
        Where everything is written.
    n_objects
        Size of the mock survey.
    seed
        Random seed.
    progress
        Show progress bars.

    Returns
    -------
    dict
        Paths of what was made.
    """
    from catbuilder.synth import make_survey

    outdir = Path(outdir)
    survey = make_survey(
        outdir / "survey", n_objects=n_objects, seed=seed, progress=progress, preview=True
    )
    print(survey.summary())
    return {"survey": survey.root}
