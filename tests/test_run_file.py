"""A training run file: its configuration section applies to its run, and only to it."""

from __future__ import annotations

import json

import pytest

from catbuilder import config
from catbuilder.training.run import run_training


def test_a_run_files_settings_apply_to_its_run_and_not_after(hp_stack, tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(
        json.dumps(
            {
                "stack": str(hp_stack.path),
                "model": "keras.small-cnn",
                "output": "model",
                "checkpoint-dir": "checkpoints",
                "params": {"input_size": 32, "epochs": 1, "batch_size": 32},
                "catbuilder": {"train": {"calibration": "none"}},
            }
        )
    )
    before = config.get("train.calibration")
    assert before != "none"
    res = run_training(run)
    manifest = json.loads((tmp_path / "model" / "catbuilder-model.json").read_text())
    assert manifest["calibration"] is None  # train.calibration: none, from the run file
    assert res.output == tmp_path / "model"
    assert config.get("train.calibration") == before  # nothing of the run file stays behind
    # the same stack trained by arguments: the configuration's own default applies
    run_training(
        hp_stack.path, output=tmp_path / "again", checkpoint_dir=tmp_path / "again-checkpoints",
        params={"input_size": 32, "epochs": 1},
    )  # fmt: skip
    again = json.loads((tmp_path / "again" / "catbuilder-model.json").read_text())
    assert again["calibration"] is not None  # fitted (auto), applied or not


def test_a_run_file_with_an_unknown_setting_is_refused_before_training(hp_stack, tmp_path):
    run = tmp_path / "run.yaml"
    run.write_text(json.dumps({"stack": str(hp_stack.path), "catbuilder": {"train": {"epoks": 3}}}))
    with pytest.raises(ValueError, match="epoks"):
        run_training(run)
    assert not (tmp_path / "hp.model").exists()
