"""The ``catbuilder`` command line.

Each subcommand imports what it needs when it runs, so ``catbuilder --help``
is fast and imports no deep-learning framework.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from catbuilder.cli import data, models, products, runs  # noqa: F401  (registers commands)
from catbuilder.cli.common import COMMANDS, HelpFormatter

__all__ = ["main"]


# -- synth --------------------------------------------------------------------


# -- tiles --------------------------------------------------------------------


# -- cutouts ------------------------------------------------------------------


# -- crossmatch -----------------------------------------------------------------


# -- plugins --------------------------------------------------------------------


# -- train ----------------------------------------------------------------------


# -- predict ----------------------------------------------------------------------


# -- selftrain -------------------------------------------------------------------


# -- similar ----------------------------------------------------------------------


# -- evaluate ---------------------------------------------------------------------


# -- run and demo ---------------------------------------------------------------


# -- entry point ----------------------------------------------------------------


def _global_options(p: argparse.ArgumentParser, top: bool) -> None:
    """Options every command takes, before or after the command's name."""
    d = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--config", type=Path, help="user YAML configuration file", **d)
    p.add_argument(
        "--strict",
        action="store_true",
        help="treat warnings about changed or ignored input as errors",
        **d,
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="show tracebacks of errors and the native libraries' start-up messages",
        **d,
    )


def build_parser() -> argparse.ArgumentParser:
    from catbuilder._version import __version__

    parser = argparse.ArgumentParser(
        prog="catbuilder",
        description="Build galaxy morphology catalogs from survey images.",
    )
    parser.add_argument("--version", action="version", version=f"catbuilder {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (setup, run) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=setup.help,  # type: ignore[attr-defined]
            description=setup.help,  # type: ignore[attr-defined]
            formatter_class=HelpFormatter,
        )
        setup(p)
        _global_options(p, top=False)
        p.set_defaults(_run=run)
    return parser


#: the conventions every command follows (tests/test_cli_conventions.py checks them)
CONVENTIONS = """## Conventions

- Every output is `-o/--output` (`synth` and `demo` also take it as their last
  argument: `catbuilder demo d`). Paths resolve against the current directory.
- Every command that runs on Dask takes `--cluster` (a local scheduler,
  `local`, a dask-jobqueue name or a scheduler address) and `--workers`;
  every command that computes takes `--no-progress`.
- A command that would refuse an existing output takes `--overwrite`, which
  replaces only an output catbuilder wrote (`tiles`, `cutouts`, `crossmatch`,
  `train`, `predict`, `similar`, `evaluate`). Commands that keep and resume
  their outputs (`synth`, `selftrain`, `run`, `demo`) replace only what they
  wrote, when parameters change.
- `--model` names a plugin (`catbuilder plugins`); `--model-dir` is a saved
  model to read.
- Quantities are strings with units: `--size "20 arcsec"`, `--radius "1
  arcsec"` (a bare number is pixels for sizes, arcsec for radii).
- Every failure is one line, `catbuilder <command>: error: ...`, exit status 2."""


def reference_markdown() -> str:
    """The command-line reference (``docs/cli.md``): every command's ``--help``."""
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"  # the same text on every terminal
    try:
        parser = build_parser()
        parts = [
            "# Command-line reference",
            "",
            "Generated from the parser by `python -m catbuilder.cli --reference > docs/cli.md`;",
            "a test fails when it is out of date.",
            "",
            *CONVENTIONS.splitlines(),
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
        ]
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for name, p in sub.choices.items():
            parts += ["", f"## catbuilder {name}", "", "```text", p.format_help().rstrip(), "```"]
        return "\n".join(parts) + "\n"
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


_OS_HINTS = {
    errno.ENOSPC: "free some space (or choose another output) and run the same command "
    "again: finished work is kept and resumed",
    errno.EDQUOT: "free some space (or choose another output) and run the same command again",
    errno.EROFS: "the file system is read-only; choose a writable output path",
    errno.EACCES: "choose an output path you may write to",
    errno.EPERM: "choose an output path you may write to",
}


def _full_disk(output) -> bool:
    """Whether the file system ``output`` is on has (almost) no space left."""
    import shutil

    if output is None:
        return False
    path = Path(os.path.abspath(output))
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        return shutil.disk_usage(path).free < 64 * 1024
    except OSError:
        return False


def error_message(err: BaseException) -> str:
    """One line that says what went wrong (and, where known, what to do)."""
    if isinstance(err, OSError) and err.errno in _OS_HINTS:
        where = f" ({err.filename})" if err.filename else ""
        msg = f"{err.strerror or err}{where}: {_OS_HINTS[err.errno]}"
    elif isinstance(err, KeyError) and type(err) is KeyError:
        msg = f"missing key {err.args[0]!r}" if err.args else "missing key"
    else:
        msg = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
        from catbuilder.errors import CatbuilderError, CatbuilderWarning

        plain = (CatbuilderError, ValueError, FileNotFoundError, FileExistsError, MemoryError)
        if isinstance(err, CatbuilderWarning):
            msg = f"{msg} (a warning, made an error by --strict)"
        elif not isinstance(err, plain) or not msg:
            msg = f"{type(err).__name__}: {msg} (run with --debug for the traceback)"
    return " ".join(msg.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status.

    Every failure is one line, ``catbuilder <command>: error: <message>``,
    and exit status 2 (130 after Ctrl-C); ``--debug`` shows the traceback.
    Warnings are one line each; ``--strict`` makes input warnings errors.
    """
    import warnings

    try:  # the parser reads the configuration (for --help defaults): a bad key is one line
        parser = build_parser()
    except Exception as err:
        print(f"catbuilder: error: {error_message(err)}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    name = f"catbuilder {args.command}"
    if args.debug:  # before any framework loads, here and in worker processes
        os.environ["CATBUILDER_DEBUG"] = "1"

    def one_line(message, category, filename, lineno, file=None, line=None):
        text = " ".join(str(message).split())
        print(f"{name}: warning: {text}", file=sys.stderr)

    from catbuilder.errors import CatbuilderWarning, strict

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", CatbuilderWarning)  # every one, every time
            warnings.showwarning = one_line
            with strict(args.strict):
                if args.config is not None:
                    from catbuilder import config

                    config.load(args.config)
                return int(args._run(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            f"{name}: interrupted; finished work is kept: run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as err:
        if args.debug:
            raise
        msg = error_message(err)
        from catbuilder.errors import CatbuilderError

        full = _full_disk(getattr(args, "output", None))
        if isinstance(err, OSError) and err.errno != errno.ENOSPC and full:
            # a full disk can surface as another error: a write that lost the race
            # with the cleanup of the one that failed first finds its folder gone
            err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            msg = f"{error_message(err)} ({msg})"

        own = isinstance(err, CatbuilderError)  # its messages name the path already
        if (  # an OS error that names no file happened writing the output
            isinstance(err, OSError)
            and not isinstance(err, FileNotFoundError)  # an input that is not there
            and not own
            and not err.filename
            and getattr(args, "output", None)
        ):
            msg = f"writing {args.output}: {msg}"
        print(f"{name}: error: {msg}", file=sys.stderr)
        return 2
