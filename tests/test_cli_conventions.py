"""One set of command-line conventions, checked on every subcommand's parser
(the conventions are written in docs/cli.md)."""

from __future__ import annotations

import argparse

import pytest

from catbuilder.cli import build_parser

#: what each command does, which decides the options it must have
WRITES = {"synth", "tiles", "cutouts", "crossmatch", "train", "predict", "selftrain", "similar",
          "evaluate", "run", "demo", "survey"}  # fmt: skip
ON_DASK = {"synth", "cutouts", "crossmatch", "train", "predict", "selftrain", "run", "demo",
           "survey"}  # fmt: skip
COMPUTES = ON_DASK | {"tiles", "similar", "evaluate"}
REFUSES_EXISTING = {"tiles", "cutouts", "crossmatch", "train", "predict", "similar", "evaluate"}
RESUMES = {"synth", "selftrain", "run", "demo", "survey"}
NEITHER = {"plugins", "weights"}  # lists plugins; writes into Keras's weights cache


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings if a.help != argparse.SUPPRESS}


def test_every_command_is_classified():
    assert set(_commands()) == WRITES | NEITHER
    assert REFUSES_EXISTING | RESUMES == WRITES and not REFUSES_EXISTING & RESUMES


@pytest.mark.parametrize("name", sorted(WRITES | NEITHER))
def test_each_command_follows_the_conventions(name):
    opts = _commands()[name]
    o = _options(opts)
    if name in WRITES:
        assert "-o" in o and "--output" in o and o["-o"] is o["--output"], name
    if name in ON_DASK:
        assert {"--cluster", "--workers"} <= set(o), name
    if name in COMPUTES:
        assert "--no-progress" in o, name
    if name in REFUSES_EXISTING:
        assert "--overwrite" in o, name
    if name in RESUMES | NEITHER:
        assert "--overwrite" not in o, name
    if "--model" in o:
        assert "plugin" in o["--model"].help and "--model-dir" not in o["--model"].option_strings
    if "--model-dir" in o:
        assert "saved model" in o["--model-dir"].help
    for flag, action in o.items():  # quantities are strings with units, not unit-suffixed flags
        assert not flag.endswith(("-arcsec", "-deg", "-px", "-pixels")), (name, flag)
        if flag in ("--size", "--radius"):
            assert action.type in (None, str), (name, flag)


def test_the_conventions_are_written_in_the_cli_reference():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    assert "## Conventions" in text and "-o/--output" in text and "--overwrite" in text


def test_a_size_and_a_radius_take_units(tmp_path, capsys):
    from catbuilder.cli import main

    a = tmp_path / "a.csv"
    a.write_text("objid,ra,dec\n1,150.0,2.0\n")
    b = tmp_path / "b.csv"
    b.write_text("objid,ra,dec\n9,150.0001,2.0\n")
    assert main(["crossmatch", str(a), str(b), "-o", str(tmp_path / "m.parquet"),
                 "--radius", "1 arcsec", "--no-progress"]) == 0  # fmt: skip
    assert "1/1 left rows matched" in capsys.readouterr().out
    assert main(["crossmatch", str(a), str(b), "-o", str(tmp_path / "n.parquet"),
                 "--radius", "1 km"]) == 2  # fmt: skip
    assert "radius must be an angle" in capsys.readouterr().err
    assert main(["tiles", str(tmp_path), "-o", str(tmp_path / "idx.csv")]) == 2
    assert "a tile index is written as Parquet" in capsys.readouterr().err
