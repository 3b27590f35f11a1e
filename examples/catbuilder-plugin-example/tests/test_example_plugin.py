"""The example plugin keeps catbuilder's contract (check_plugin), in its own tests."""

from catbuilder_plugin_example import ColourCentroidPlugin

from catbuilder.testing import check_plugin


def test_contract(tmp_path):
    report = check_plugin(ColourCentroidPlugin, params={"radius": 4}, workdir=tmp_path)
    assert set(report) == {
        "discovery", "params", "fit", "predict_proba", "transform", "iter_predictions",
        "save/load",
    }  # fmt: skip
