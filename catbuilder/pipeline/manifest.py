"""The run manifest (``<workdir>/manifest.json``): what a pipeline run read,
with which parameters and versions, what each step wrote and how long it took.

It is also how a run knows its own outputs: a step is skipped when the
manifest records it complete with the same fingerprint and its outputs are
still there, and only paths the manifest records are ever replaced.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from catbuilder.provenance import fingerprint, versions

__all__ = ["Manifest", "fingerprint", "versions"]

KIND = "pipeline-manifest"


class Manifest:
    """``manifest.json`` of a work directory, written atomically after every change."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None):
        self.path = path
        self.data = data or {"catbuilder": {"kind": KIND}, "steps": {}, "checksums": {}}

    @classmethod
    def open(cls, workdir: Path) -> Manifest | None:
        path = workdir / "manifest.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if (data.get("catbuilder") or {}).get("kind") != KIND:
            return None
        data.setdefault("steps", {})
        data.setdefault("checksums", {})
        return cls(path, data)

    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        return self.data["steps"]

    def own_paths(self) -> set[Path]:
        """Every output a step of a run in this directory wrote or may be writing
        (absolute), including outputs of earlier settings no step records now."""
        rels = set(self.data.get("written", []))
        for step in self.steps.values():
            rels.update((step.get("outputs") or {}).values())
        return {(self.path.parent / p).resolve() for p in rels}

    def add_written(self, rels) -> None:
        """Remember outputs as this directory's own for good (``written``)."""
        self.data["written"] = sorted(set(self.data.get("written", [])) | set(rels))

    def checksum(self, path: Path) -> dict[str, Any]:
        """The fingerprint of an input file (:mod:`catbuilder.fingerprints`, method
        ``pipeline.input-fingerprint``), reused while its size and mtime are unchanged.

        The record's ``fingerprint`` is what step fingerprints use; a record of a
        run that hashed every byte (``sha256`` only) stays valid as it was.
        """
        from catbuilder import config
        from catbuilder.fingerprints import file_fingerprint

        method = config.get("pipeline.input-fingerprint")
        st = path.stat()
        key = str(path.resolve())
        old = self.data["checksums"].get(key)
        if old and old["bytes"] == st.st_size and old["mtime_ns"] == st.st_mtime_ns:
            if "fingerprint" not in old:  # recorded with every byte hashed
                return {**old, "fingerprint": old["sha256"]}
            if old.get("method") == method:
                return old
        new = {
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "method": method,
            "fingerprint": file_fingerprint(path, method),
        }
        self.data["checksums"][key] = new
        return new

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=False, default=str) + "\n")
        os.replace(tmp, self.path)
