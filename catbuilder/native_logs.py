"""Quiet native libraries: hold what C/C++ code writes to stderr while it loads.

Deep-learning frameworks print start-up lines from C++ (CUDA plugin
registration on a CPU machine, CPU-feature notes) straight to file
descriptor 2, where Python's warning filters cannot reach them. Plugins wrap
their framework import in :func:`filtered_stderr`; lines matching the noise
patterns are dropped and every other line is written out unchanged, after
the block. With ``CATBUILDER_DEBUG=1`` (``catbuilder --debug``) nothing is
dropped.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["debugging", "filtered_stderr"]


def debugging() -> bool:
    """Whether catbuilder runs with ``--debug`` (``CATBUILDER_DEBUG`` set and not 0)."""
    return os.environ.get("CATBUILDER_DEBUG", "0") not in ("", "0")


@contextmanager
def filtered_stderr(noise: Sequence[str]) -> Iterator[None]:
    """Drop native stderr lines that match any regex in ``noise`` while the block runs.

    Parameters
    ----------
    noise
        Regular expressions (searched in each line).
    """
    if debugging():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2 (embedded interpreters)
        yield
        return
    patterns = [re.compile(p) for p in noise]
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not any(p.search(line) for p in patterns):
                    sys.stderr.write(line)
            sys.stderr.flush()
