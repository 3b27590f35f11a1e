"""Training on Galaxy Zoo vote fractions as soft targets, weighted by votes."""

import numpy as np
import pytest


def test_vote_fractions_and_counts_travel_from_galaxy_zoo_into_the_stack(hp_survey, fo_stack):
    votes = hp_survey.read_labels()
    t = fo_stack.objects()
    assert {"label_prob", "label_votes"} <= set(t.columns)
    by_id = votes.set_index("objid")
    got = by_id.loc[t["label_objid"].to_numpy(), "n_votes"].to_numpy()
    np.testing.assert_array_equal(t["label_votes"].to_numpy(), got)
    assert (t["label_prob"] < 0.9).mean() > 0.2  # not only the high-probability few


def test_train_on_soft_labels_and_the_plugins_that_cannot(fo_stack, tmp_path):
    from catbuilder import train

    params = {"batch_size": 32, "input_size": 32, "stages": "whole-network", "epochs": 2}
    res = train(fo_stack, "keras.small-cnn", params=params, soft_labels=True,
                checkpoint_dir=tmp_path / "ck")  # fmt: skip
    assert res.model.soft_labels and len(res.history) == 2
    assert np.isfinite(res.history["loss"]).all()
    with pytest.raises(ValueError, match="does not train on soft labels"):
        train(fo_stack, "morphology.random-forest", soft_labels=True)
