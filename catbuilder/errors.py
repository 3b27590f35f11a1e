"""catbuilder's exceptions and warnings.

Every error that bad input, a bad option or a resource limit can cause is a
:class:`CatbuilderError` (or one of Python's own ``ValueError``,
``FileNotFoundError``, ``KeyError`` where that is the natural type): its
message says what is wrong and what to do, on one line, and the CLI prints it
as ``catbuilder <command>: error: <message>``.

Where catbuilder changes an input on purpose (wraps a negative RA, numbers
rows that have no id column, resizes cutouts to a model's input) it says so
with an :class:`InputWarning`, and the change is recorded where it matters
(a flag, the store's metadata). ``strict`` mode (``catbuilder --strict``, or
:func:`strict`) turns these warnings into errors.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "CatbuilderError",
    "CatbuilderWarning",
    "IncompleteStoreError",
    "InputWarning",
    "OutputExistsError",
    "ResourceLimitError",
    "strict",
]


class CatbuilderError(Exception):
    """Base class of catbuilder's own errors: the message is the whole story."""


class OutputExistsError(CatbuilderError, FileExistsError, ValueError):
    """An output path holds something catbuilder may not replace (or a store made
    with other arguments, without ``overwrite``; a ValueError as before)."""


class IncompleteStoreError(CatbuilderError, RuntimeError):
    """A store holds a build that did not finish (resume it with the same call)."""


class ResourceLimitError(CatbuilderError, MemoryError):
    """A request would need more memory or disk than the workers have."""


class CatbuilderWarning(UserWarning):
    """Base class of catbuilder's warnings."""


class InputWarning(CatbuilderWarning):
    """An input was changed or ignored on purpose; ``strict`` makes it an error."""


def warn(message: str, stacklevel: int = 2) -> None:
    """Issue an :class:`InputWarning` (an error under :func:`strict`)."""
    warnings.warn(message, InputWarning, stacklevel=stacklevel + 1)


@contextmanager
def strict(enabled: bool = True) -> Iterator[None]:
    """Turn :class:`InputWarning` into errors inside the block.

    Examples
    --------
    >>> from catbuilder.errors import strict
    >>> with strict():  # doctest: +SKIP
    ...     build_stack(...)  # a wrapped RA is now an error
    """
    with warnings.catch_warnings():
        if enabled:
            warnings.simplefilter("error", InputWarning)
        yield
