"""The public API: what ``import catbuilder`` offers, each entry documented in
numpydoc's format (checked by numpydoc's own validation) with examples that
run where they are cheap."""

from __future__ import annotations

import doctest

import pytest

import catbuilder

#: numpydoc's checks that every public entry must pass: a docstring, every
#: parameter documented and none unknown, a Returns section (functions), an
#: Examples section, a one-line summary ending in a period
REQUIRED = {"GL08", "PR01", "PR02", "RT01", "EX01", "SS05"}


def _path(name: str) -> str:
    obj = getattr(catbuilder, name)
    return f"{obj.__module__}.{obj.__qualname__}"


def test_the_api_is_the_workflow_a_user_scripts():
    expected = {
        "TileIndex", "crossmatch", "label_sources", "select_galaxy_zoo", "build_stack",
        "open_stack", "train", "predict", "build_catalog", "read_catalog", "write_catalog",
        "evaluate", "self_train", "similar", "load_model", "save_model", "Pipeline",
        "make_cluster", "get_plugin", "list_plugins",
    }  # fmt: skip
    assert expected <= set(catbuilder.API)
    assert set(catbuilder.API) <= set(dir(catbuilder))
    # a subpackage of the same meaning does not shadow a function
    import importlib

    importlib.import_module("catbuilder.evaluation")
    importlib.import_module("catbuilder.training")
    assert callable(catbuilder.train) and callable(catbuilder.evaluate)


@pytest.mark.parametrize("name", catbuilder.API)
def test_every_public_entry_passes_numpydoc_validation(name):
    from numpydoc.validate import validate

    errors = [f"{code}: {msg}" for code, msg in validate(_path(name))["errors"] if code in REQUIRED]
    assert errors == [], f"catbuilder.{name} ({_path(name)})"


def test_the_validation_catches_a_missing_section():
    from numpydoc.validate import validate

    codes = {code for code, _ in validate("catbuilder.stack.store.ImageStack.select")["errors"]}
    codes |= {code for code, _ in validate("catbuilder.importing.import_object")["errors"]}
    assert {"EX01", "RT01"} <= codes


def test_the_cheap_examples_run():
    finder, runner = doctest.DocTestFinder(recurse=False), doctest.DocTestRunner(verbose=False)
    ran = 0
    for name in catbuilder.API:
        obj = getattr(catbuilder, name)
        for test in finder.find(obj, f"catbuilder.{name}", globs={}):
            runner.run(test)
            ran += sum(1 for ex in test.examples if not ex.options.get(doctest.SKIP))
    result = runner.summarize(verbose=False)
    assert result.failed == 0
    assert ran >= 10  # crossmatch, select_galaxy_zoo, evaluate, the plugin registry ...
