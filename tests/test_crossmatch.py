import numpy as np
import pandas as pd
import pytest

from catbuilder.sky import crossmatch


def test_sdss_like_and_des_like_crossmatch(mock_survey):
    sdss = mock_survey["sdss-like"].read_sources()
    des = mock_survey["des-like"].read_sources()
    res = crossmatch(sdss, des)
    assert len(res.matches) == len(sdss)
    joined = res.join()
    assert (joined["truth_id"] == joined["truth_id_2"]).all()
    assert joined["sep_arcsec"].max() < 1.0
    # everything in the des-only area stays unmatched on the right
    truth = mock_survey.read_truth().set_index("truth_id")
    un = res.unmatched_right
    assert (truth.loc[un["truth_id"], "area"] == "des-only").all()
    assert len(un) == (truth.loc[des["truth_id"], "area"] == "des-only").sum()
    assert f"{len(sdss)}/{len(sdss)} left rows matched" in res.summary()


def _random_pairs(n, seed):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(10, 12, n)
    dec = rng.uniform(-2, 2, n)
    left = pd.DataFrame({"objid": np.arange(n), "ra": ra, "dec": dec})
    jitter = rng.normal(0, 0.3 / 3600, (2, n))
    right = pd.DataFrame(
        {"objid": np.arange(n) + 10**6, "ra": ra + jitter[0], "dec": dec + jitter[1]}
    ).sample(frac=1, random_state=1)
    return left, right


def test_partitioned_match_equals_single_match():
    left, right = _random_pairs(20000, 0)
    single = crossmatch(left, right, 1.0, partitioned=False)
    parts = crossmatch(left, right, 1.0, partitioned=True, partition_rows=1500, cluster="threads")
    pd.testing.assert_frame_equal(single.matches, parts.matches)
    assert len(single.matches) > 0.99 * len(left)


def test_pairs_across_strip_boundaries_are_found():
    # left objects on either side of every strip edge, right ones across it
    dec = np.repeat(np.linspace(-1, 1, 50), 2) + np.tile([-1e-5, 1e-5], 50)
    left = pd.DataFrame({"ra": np.full(100, 30.0), "dec": dec})
    right = pd.DataFrame({"ra": np.full(100, 30.0), "dec": dec[::-1] + np.tile([4e-5, -4e-5], 50)})
    parts = crossmatch(left, right, 0.5, partitioned=True, partition_rows=2, cluster="sync")
    single = crossmatch(left, right, 0.5, partitioned=False)
    pd.testing.assert_frame_equal(single.matches, parts.matches)


def test_radius_and_unmatched_report():
    left = pd.DataFrame({"ra": [10.0, 10.0, 10.0, np.nan], "dec": [0.0, 0.01, 0.02, 0.0]})
    right = pd.DataFrame({"ra": [10.0, 10.0], "dec": [0.5 / 3600, 0.01 + 1.5 / 3600]})
    res = crossmatch(left, right, 1.0)
    assert res.matches["left"].tolist() == [0]
    assert res.matches["sep_arcsec"].iloc[0] == pytest.approx(0.5, rel=1e-6)
    assert res.unmatched_left.index.tolist() == [1, 2, 3]
    assert len(crossmatch(left, right, 2.0).matches) == 2
    with pytest.raises(ValueError, match="positive"):
        crossmatch(left, right, 0)


def test_labels_carried_onto_another_survey(mock_survey):
    from catbuilder.sky import label_sources, select_galaxy_zoo

    labels = mock_survey.read_labels()
    des = mock_survey["des-like"].sources
    only = label_sources(labels, des, sample="fo")
    every = label_sources(labels, des, sample="fo", keep_unlabelled=True)
    n_des = len(pd.read_parquet(des))
    assert len(every) == n_des and every["objid"].is_unique
    assert 0 < len(only) <= len(select_galaxy_zoo(labels, "fo"))
    assert (only["label"] != "").all() and set(only["split"]) <= {"train", "validation", "test"}
    unlabelled = every["label"] == ""
    assert unlabelled.sum() == n_des - len(only)
    # only labelled objects are put in a split (the rest are neither trained nor scored on)
    assert (every.loc[unlabelled, "split"] == "").all()
    merged = every[~unlabelled].merge(only, on="objid", suffixes=("", "_only"))
    assert (merged["label"] == merged["label_only"]).all()
    assert (merged["split"] == merged["split_only"]).all()


def test_labels_onto_a_hats_catalog_through_lsdb_equal_those_in_memory(mock_survey, tmp_path):
    from hats_tables import write_hats

    from catbuilder import config
    from catbuilder.sky import label_sources, read_sources

    labels = mock_survey.read_labels()
    hats = tmp_path / "des"
    des = write_hats(pd.read_parquet(mock_survey["des-like"].sources), hats)
    pd.testing.assert_frame_equal(
        read_sources(hats).sort_values("objid", ignore_index=True),
        read_sources(des).sort_values("objid", ignore_index=True),
    )
    want = label_sources(labels, des, sample="fo").sort_values("objid", ignore_index=True)
    assert label_sources(labels, hats, sample="fo")["objid"].isin(want["objid"]).all()
    with config.set({"crossmatch.lsdb-min-rows": 1}):  # auto: lsdb for a HATS catalog this large
        got = label_sources(labels, hats, sample="fo").sort_values("objid", ignore_index=True)
    forced = label_sources(labels, hats, sample="fo", method="lsdb")
    assert len(want) > 10
    pd.testing.assert_frame_equal(want, got[want.columns])
    forced = forced.sort_values("objid", ignore_index=True)
    pd.testing.assert_frame_equal(want, forced[want.columns])
    with pytest.raises(ValueError, match="keep_unlabelled=True holds every source"):
        label_sources(labels, hats, method="lsdb", keep_unlabelled=True)
    with pytest.raises(ValueError, match="is not one"):
        label_sources(labels, mock_survey["des-like"].sources, method="lsdb")
    with pytest.raises(ValueError, match="method must be"):
        label_sources(labels, hats, method="healpix")
