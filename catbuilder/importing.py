"""``"module:attribute"`` references, the way entry points write them."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["import_object"]


def import_object(reference: str) -> Any:
    """The object a ``"module:qualified.name"`` reference names (the module alone
    when there is no ``:``), imported on the call.

    Raises
    ------
    ImportError, AttributeError
        As the import or the attribute lookup raise them.
    """
    module, _, qualname = reference.partition(":")
    obj: Any = importlib.import_module(module)
    for part in filter(None, qualname.split(".")):
        obj = getattr(obj, part)
    return obj
