"""Galaxy-Zoo-like volunteer votes for the galaxies of a mock survey.

Each galaxy gets a number of votes split between *spiral*, *elliptical* and
*don't know*. How clearly its morphology shows (its "clarity") sets how often
volunteers choose its true class: big, bright, face-on spirals with strong
arms and big bright ellipticals are nearly unanimous, small faint or edge-on
galaxies are not, and small spirals whose arms are washed out by the seeing
are often called elliptical. As in Galaxy Zoo 1, the published fractions are
"debiased": corrected for the tendency of distant galaxies to look smooth.
The paper's thresholds (0.985 spiral, 0.926 elliptical) then select a clean
subset, and lower thresholds a noisier one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["galaxy_zoo_votes"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def galaxy_zoo_votes(
    truth: pd.DataFrame,
    seeing: float,
    seed: int,
    mean_votes: float = 45.0,
    label_noise: float = 0.0,
) -> pd.DataFrame:
    """Simulate debiased vote fractions for the galaxies in ``truth``.

    Parameters
    ----------
    truth
        Truth rows (``truth_id, cls, hlr, q, mag_r, z, arm_strength``); stars
        are ignored.
    seeing
        FWHM in arcsec of the images volunteers looked at.
    seed
        Random seed.
    mean_votes
        Mean number of votes per galaxy.
    label_noise
        Fraction of galaxies whose spiral and elliptical fractions are
        swapped: wrong labels, as a few percent of any label set has.

    Returns
    -------
    pandas.DataFrame
        ``truth_id, p_spiral, p_elliptical, p_dontknow, n_votes`` and the
        underlying ``clarity`` and ``flipped`` (the swapped ones).
    """
    gal = truth[truth["cls"] != "star"]
    rng = np.random.default_rng([seed, 7])
    n = len(gal)
    spiral = (gal["cls"] == "spiral").to_numpy()
    resolved = np.log(gal["hlr"].to_numpy() / seeing)
    bright = 17.7 - gal["mag_r"].to_numpy()
    # arms show best in face-on discs with strong arms
    arms = np.where(spiral, gal["q"].to_numpy() * gal["arm_strength"].to_numpy(), 0.5)
    score = 3.0 * resolved + 1.5 * bright + np.where(spiral, 10.0 * (arms - 0.3), 1.0)
    clarity = _sigmoid(score + rng.normal(0.0, 1.0, n))

    # probability that a volunteer picks the true class; unresolved spirals
    # look smooth, so their votes lean elliptical
    p_true = np.where(spiral, 0.30 + 0.70 * clarity, 0.50 + 0.50 * clarity)
    p_dk = 0.15 * (1.0 - clarity)
    p_true = p_true * (1.0 - p_dk)
    p_false = 1.0 - p_true - p_dk

    n_votes = np.maximum(10, rng.poisson(mean_votes, n))
    probs = np.stack([p_true, p_false, p_dk], axis=1)
    counts = np.array([rng.multinomial(k, p) for k, p in zip(n_votes, probs)]).reshape(n, 3)
    true_frac = counts[:, 0] / n_votes
    false_frac = counts[:, 1] / n_votes
    raw_sp = np.where(spiral, true_frac, false_frac)
    raw_el = np.where(spiral, false_frac, true_frac)

    # debiasing: distant galaxies look smooth, so part of the elliptical vote
    # is moved to spiral in proportion to redshift (as in GZ1's correction)
    shift = np.clip(0.4 * gal["z"].to_numpy(), 0, 0.1) * raw_el * (raw_sp > 0)
    p_spiral = np.clip(raw_sp + shift, 0.0, 1.0)
    p_elliptical = np.clip(raw_el - shift, 0.0, 1.0)
    # wrong labels from their own random stream: the votes are those of the same seed
    flipped = np.random.default_rng([seed, 13]).random(n) < label_noise
    p_spiral, p_elliptical = (
        np.where(flipped, p_elliptical, p_spiral),
        np.where(flipped, p_spiral, p_elliptical),
    )
    return pd.DataFrame(
        {
            "truth_id": gal["truth_id"].to_numpy(),
            "p_spiral": p_spiral.round(4),
            "p_elliptical": p_elliptical.round(4),
            "p_dontknow": (counts[:, 2] / n_votes).round(4),
            "n_votes": n_votes.astype(np.int32),
            "clarity": clarity.round(4),
            "flipped": flipped,
        }
    )
