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
