"""What every subcommand shares: the command registry and the flags written once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str):
    """Register ``func`` as subcommand ``name``; ``setup`` adds its arguments."""

    def deco(setup: Callable[[argparse.ArgumentParser], None]):
        def register(run: Callable):
            COMMANDS[name] = (setup, run)
            setup.help = help  # type: ignore[attr-defined]
            return run

        return register

    return deco


def where_options(p: argparse.ArgumentParser, default: str) -> None:
    """The flags that say where a command's Dask work runs: the same on every command."""
    p.add_argument(
        "--cluster",
        default=None,
        help=f"where to run: processes, threads, sync, local (a LocalCluster), a "
        f"dask-jobqueue name (slurm, pbs, ...) or a scheduler address (default: {default})",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Dask worker processes (default: one per core on this machine)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default (where it has one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in ("?", "*"):
            text += " (default: %(default)s)"
        return text


def conf(key: str) -> str:
    """``(default: <value>)`` of configuration key ``key``, for --help."""
    from catbuilder import config

    value = config.get(key)
    if isinstance(value, list):
        value = ",".join(map(str, value))
    return f"(default: {value}; configuration {key})"


def output_option(
    p: argparse.ArgumentParser, help: str, *, default: Any = None, positional: bool = False
) -> None:
    """``-o/--output``, the one spelling of every command's output; with
    ``positional``, the output may also be the last positional argument."""
    if positional:
        p.add_argument("output_arg", nargs="?", type=Path, default=None, metavar="OUTPUT",
                       help=f"{help} (or -o)")  # fmt: skip
    p.add_argument("-o", "--output", type=Path, default=default, help=help)


def overwrite_option(p: argparse.ArgumentParser, what: str = "outputs catbuilder wrote") -> None:
    """``--overwrite``: replace an existing output (only ever one catbuilder wrote)."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def resolved_output(args: argparse.Namespace, default: Any = None) -> Any:
    """The output from ``-o`` or the positional spelling (one of them, not both)."""
    given = [v for v in (getattr(args, "output_arg", None), args.output) if v is not None]
    if len(given) == 2 and given[0] != given[1]:
        raise ValueError(f"two outputs given: {given[0]} and -o {given[1]}; give one")
    return given[0] if given else default


def check_output(path: Path, what: str, overwrite: bool) -> None:
    """Before any work: ``path`` is absent, or catbuilder's own and ``--overwrite`` was given."""
    from catbuilder.errors import OutputExistsError
    from catbuilder.outputs import check_parquet_output

    check_parquet_output(path, what)  # anything not catbuilder's is refused regardless
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"{path} exists (a {what} catbuilder wrote); add --overwrite to replace it"
        )


def csv_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",")]  # empty names are errors, not dropped


def cutout_options(p: argparse.ArgumentParser) -> None:
    """``--size`` and ``--bands``: what a stack's cutouts are, said one way everywhere."""
    p.add_argument(
        "--size",
        default=None,
        help=f'cutout side: pixels, or an angle such as "20 arcsec" {conf("cutouts.size")}',
    )
    p.add_argument(
        "--bands", type=csv_list, default=None, help=f"comma-separated {conf('cutouts.bands')}"
    )


def cutout_size(value: str | None) -> int | str | None:
    """``--size`` as ``build_stack`` takes it: pixels as an int, an angle as text."""
    return int(value) if value is not None and value.strip().isdigit() else value
