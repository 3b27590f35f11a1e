import subprocess
import sys

HEAVY = ("tensorflow", "tf_keras", "keras", "horovod", "torch", "galsim", "distributed")


def _modules_after(code: str) -> set[str]:
    res = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(res.stdout.split())


def test_import_catbuilder_imports_no_framework():
    mods = _modules_after("import catbuilder")
    loaded = {m for m in HEAVY if m in mods}
    assert not loaded, f"import catbuilder pulled in {loaded}"


def test_cli_help_imports_no_framework():
    mods = _modules_after("from catbuilder.cli import build_parser; build_parser().format_help()")
    assert not {m for m in HEAVY if m in mods}


def test_top_level_api_is_lazy_and_resolves():
    code = (
        "import catbuilder, sys\n"
        "names = [n for n in dir(catbuilder) if not n.startswith('_')]\n"
        "assert 'tensorflow' not in sys.modules\n"
        "from catbuilder.infer import predict\n"
        "from catbuilder.catalog import build_catalog\n"
        "assert catbuilder.predict is predict and catbuilder.build_catalog is build_catalog\n"
        "assert all(getattr(catbuilder, n) is not None for n in names)\n"
        "print('ok', len(names))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("ok")
