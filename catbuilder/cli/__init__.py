"""The ``catbuilder`` command line.

Each subcommand imports what it needs when it runs, so ``catbuilder --help``
is fast and imports no deep-learning framework. One module per command group
(:mod:`~catbuilder.cli.data`, :mod:`~catbuilder.cli.models`,
:mod:`~catbuilder.cli.products`, :mod:`~catbuilder.cli.runs`) registers its
commands with :func:`~catbuilder.cli.common.command`; :mod:`~catbuilder.cli.main`
builds the parser and is the one error path.
"""

from __future__ import annotations

from catbuilder.cli.main import build_parser, error_message, main, reference_markdown

__all__ = ["build_parser", "error_message", "main", "reference_markdown"]
