import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from catbuilder import config
from catbuilder.errors import InputWarning
from catbuilder.sky import assign_splits, read_sources, select_galaxy_zoo


@pytest.fixture
def table():
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "COADD_OBJECT_ID": np.arange(100, 110),
            "ALPHAWIN_J2000": rng.uniform(359.9, 360.1, 10),  # wraps
            "DELTAWIN_J2000": rng.uniform(-1, 1, 10),
            "MAG_AUTO_R": rng.uniform(16, 20, 10),
            "NAME": [f"g{i}" for i in range(10)],
        }
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv", "fits"])
def test_reads_each_format_with_survey_column_names(table, tmp_path, fmt):
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":
        table.to_parquet(path)
    elif fmt == "csv":
        table.to_csv(path, index=False)
    else:
        Table.from_pandas(table).write(path)
    with pytest.warns(InputWarning, match=r"5 ALPHAWIN_J2000 value\(s\) outside \[0, 360\)"):
        src = read_sources(path)
    assert list(src.columns[:3]) == ["objid", "ra", "dec"]
    assert (src["objid"].to_numpy() == np.arange(100, 110)).all()
    assert ((src["ra"] >= 0) & (src["ra"] < 360)).all()
    assert np.allclose(src["dec"], table["DELTAWIN_J2000"])
    assert list(src["NAME"]) == list(table["NAME"])  # FITS bytes decoded
    assert "MAG_AUTO_R" in src


def test_explicit_and_configured_column_names(table):
    t = table.rename(columns={"ALPHAWIN_J2000": "alpha", "DELTAWIN_J2000": "delta"})
    src = read_sources(t, ra_col="alpha", dec_col="delta")
    assert np.allclose(src["dec"], t["delta"])
    with config.set({"sources.ra-columns": ["alpha"], "sources.dec-columns": ["delta"]}):
        assert np.allclose(read_sources(t)["ra"], t["alpha"] % 360)


def test_wrong_columns_are_clear_errors(table, tmp_path):
    path = tmp_path / "cat.parquet"
    table.drop(columns=["DELTAWIN_J2000"]).to_parquet(path)
    with pytest.raises(ValueError, match=r"cat\.parquet: no dec column.*Columns are:.*MAG_AUTO_R"):
        read_sources(path)
    with pytest.raises(ValueError, match=r"no column 'RAJ' for ra"):
        read_sources(table, ra_col="RAJ")
    bad = table.assign(DELTAWIN_J2000=["x"] * 10)
    with pytest.raises(ValueError, match="not numeric"):
        read_sources(bad)
    with pytest.raises(ValueError, match=r"> 90 deg in rows \[3\]"):
        read_sources(table.assign(DELTAWIN_J2000=[0, 0, 0, 95, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(FileNotFoundError):
        read_sources(tmp_path / "missing.fits")
    (tmp_path / "broken.fits").write_bytes(b"SIMPLE  = nonsense")
    with pytest.raises(ValueError, match=r"broken\.fits: cannot read"):
        read_sources(tmp_path / "broken.fits")


def test_missing_id_column_numbers_rows_with_a_warning(table):
    with pytest.warns(InputWarning, match="no id column.*numbered by row"):
        src = read_sources(table.drop(columns=["COADD_OBJECT_ID"]))
    assert (src["objid"] == np.arange(10)).all()


def test_galaxy_zoo_selection_uses_paper_thresholds():
    gz = pd.DataFrame(
        {"p_spiral": [0.99, 0.985, 0.5, 0.02, 0.6], "p_elliptical": [0.0, 0.01, 0.5, 0.95, 0.3]}
    )
    hp = select_galaxy_zoo(gz)
    assert list(hp["label"]) == ["spiral", "elliptical"]  # 0.985 is not > 0.985
    fo = select_galaxy_zoo(gz, "fo")
    assert list(fo["label"]) == ["spiral", "spiral", "elliptical", "spiral"]  # tie dropped
    loose = select_galaxy_zoo(gz, spiral_threshold=0.55, elliptical_threshold=0.4)
    assert list(loose["label"]) == ["spiral", "spiral", "elliptical", "elliptical", "spiral"]
    with pytest.raises(ValueError, match="no column 'p_cs'"):
        select_galaxy_zoo(gz, spiral_col="p_cs")


def test_splits_are_deterministic_and_stable():
    ids = np.arange(20000)
    s = assign_splits(ids, validation=0.1, test=0.2, seed=3)
    frac = {k: (s == k).mean() for k in ("train", "validation", "test")}
    assert abs(frac["test"] - 0.2) < 0.02 and abs(frac["validation"] - 0.1) < 0.02
    again = assign_splits(ids[5000:], validation=0.1, test=0.2, seed=3)
    assert (again == s[5000:]).all()  # independent of which other objects are present
    assert (assign_splits(ids, validation=0.1, test=0.2, seed=4) != s).any()
    with pytest.raises(ValueError):
        assign_splits(ids, validation=0.6, test=0.5)
