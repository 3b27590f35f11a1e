"""Give an asv environment the heavy dependencies of the project's .venv, not its code.

asv builds one virtualenv per environment and installs each benchmarked commit
into it (asv.conf.json's build/install commands). Installing TensorFlow,
Horovod (built from source), Dask ... into it for every environment would take
longer than the benchmarks, so this script links them in instead:

1. ``.asv/shared-deps/`` is a directory of symbolic links to everything in the
   .venv's site-packages *except* catbuilder and its plugins (their
   distributions, editable-install hooks and ``.pth`` files);
2. a ``catbuilder-shared-deps.pth`` in the asv environment's site-packages puts
   that directory on ``sys.path`` after the environment's own packages.

The commit's catbuilder and its plugins are then installed into the
environment itself (``pip install --no-deps``), so ``asv continuous`` and
``asv compare`` measure each commit's code with the same dependencies.

Usage (from asv.conf.json): ``python scripts/asv_shared_deps.py ENV_DIR [VENV]``
with VENV defaulting to ``$CATBUILDER_ASV_VENV`` or ``.venv`` next to this
repository's ``asv.conf.json``.
"""

from __future__ import annotations

import os
import re
import sys
import sysconfig
from pathlib import Path

#: what is never shared: the code under test and import hooks
_OWN = re.compile(r"^(catbuilder|_?_?editable_?_|.*\.pth$|__pycache__$)", re.IGNORECASE)


def site_packages(prefix: Path) -> Path:
    found = sorted(prefix.glob("lib/python3*/site-packages"))
    if not found:
        raise SystemExit(f"asv_shared_deps: no site-packages under {prefix}")
    return found[0]


def link_farm(venv: Path, farm: Path) -> int:
    """(Re)make ``farm``: one symlink per shareable entry of the venv's site-packages."""
    src = site_packages(venv)
    farm.mkdir(parents=True, exist_ok=True)
    for old in farm.iterdir():  # only links this script made
        if old.is_symlink():
            old.unlink()
    n = 0
    for entry in sorted(src.iterdir()):
        if _OWN.match(entry.name):
            continue
        (farm / entry.name).symlink_to(entry)
        n += 1
    return n


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    env_dir = Path(argv[0])
    conf_dir = Path(__file__).resolve().parents[1]
    venv = Path(
        argv[1] if len(argv) > 1 else os.environ.get("CATBUILDER_ASV_VENV", conf_dir / ".venv")
    )
    if not venv.is_absolute():
        venv = conf_dir / venv
    farm = conf_dir / ".asv" / "shared-deps"
    n = link_farm(venv.resolve(), farm)
    env_site = Path(sysconfig.get_paths()["purelib"])
    if not str(env_site).startswith(str(env_dir.resolve())) and not str(env_site).startswith(
        str(env_dir)
    ):
        raise SystemExit(f"asv_shared_deps: run me with {env_dir}'s python (got {sys.prefix})")
    (env_site / "catbuilder-shared-deps.pth").write_text(f"{farm}\n")
    print(f"asv_shared_deps: {n} packages of {venv} shared with {env_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
