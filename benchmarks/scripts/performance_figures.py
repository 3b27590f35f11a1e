"""Run the scale benchmark scripts and put what they print into docs/performance.md.

    python benchmarks/scripts/performance_figures.py [--only NAME ...] [--no-run]

Each script's output (its tables, without the progress lines) is kept in
``benchmarks/results/<name>.txt`` with the machine it ran on and the date, and
copied into docs/performance.md between ``<!-- figures:<name> -->`` and
``<!-- /figures:<name> -->``. ``--no-run`` only copies the kept results (the
test suite checks that the page and the results agree).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "performance.md"

#: name -> the script and its arguments (small enough to run in minutes, but the 10^6 one)
SCRIPTS = {
    "inference_throughput": ["inference_throughput.py", "--repeats", "2"],
    "training_scaling": ["training_scaling.py"],
    "cutout_speed": ["cutout_speed.py", "--skip-memory"],
    "big_tiles": ["big_tiles.py"],
    "preprocess_rate": ["preprocess_rate.py"],
    "scale_end_to_end": ["scale_end_to_end.py", "--sizes", "10000", "100000", "1000000"],
    "survey_memory": ["survey_memory.py", "--sizes", "100000", "1000000", "3000000"],
    "survey_dry_run": ["survey_dry_run.py"],
    "crossmatch_scale": ["crossmatch_scale.py", "--n", "1000000", "10000000"],
}

_NOISE = re.compile(r"cuInit|cuda_driver|WARNING: All log messages|absl::InitializeLog|^\s*$")


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu or platform.processor()}), {platform.system()}"


def run(name: str, log: Path | None = None) -> str:
    """The script's tables, stamped; from ``log`` (its saved stdout) if given."""
    script, *args = SCRIPTS[name]
    if log is not None:
        stdout = log.read_text()
    else:
        res = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "scripts" / script), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        crashed = "Traceback (most recent call last)" in res.stderr
        if crashed or res.returncode not in (0, 1):  # 1 alone: a target missed, still measured
            sys.stderr.write(res.stderr[-3000:])
            raise SystemExit(f"{script} failed with status {res.returncode}")
        stdout = res.stdout
    lines = [ln.rstrip() for ln in stdout.splitlines() if not _NOISE.search(ln)]
    stamp = f"# {script} {' '.join(args)}: {datetime.date.today()}, {machine()}"
    return "\n".join([stamp, *lines]) + "\n"


def block(name: str) -> str:
    text = (RESULTS / f"{name}.txt").read_text().rstrip("\n")
    return f"<!-- figures:{name} -->\n```text\n{text}\n```\n<!-- /figures:{name} -->"


def update_page(text: str) -> str:
    """The page with every figures block replaced by its kept results."""
    for name in SCRIPTS:
        pattern = re.compile(
            rf"<!-- figures:{name} -->.*?<!-- /figures:{name} -->", flags=re.DOTALL
        )
        if (RESULTS / f"{name}.txt").exists():
            text = pattern.sub(lambda _m, n=name: block(n), text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=sorted(SCRIPTS))
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument(
        "--log", type=Path, help="with one --only name: that script's saved stdout, not a run"
    )
    args = ap.parse_args()
    if args.log and len(args.only or []) != 1:
        ap.error("--log needs exactly one --only name")
    RESULTS.mkdir(exist_ok=True)
    if not args.no_run:
        for name in args.only or SCRIPTS:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            (RESULTS / f"{name}.txt").write_text(run(name, args.log))
    PAGE.write_text(update_page(PAGE.read_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
