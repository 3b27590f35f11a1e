"""Reading and checking a pipeline file, before anything runs.

A pipeline file has two kinds of top-level sections: the pipeline's own
(``name``, ``workdir``, ``mock``, ``inputs``, ``model``, ``steps``,
``evaluate``, ``embeddings``, ``report``; described in ``schema.yaml``) and
the configuration's (``cutouts``, ``train``, ``cluster``, ... exactly as in
``catbuilder.yaml``), which apply to this run only. Both are checked up front:
an unknown key names the closest known one, a bad value names what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import glob
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from catbuilder.errors import CatbuilderError
from catbuilder.pipeline.steps import STEP_NAMES

__all__ = ["PipelineFileError", "PipelineSpec", "load_spec", "schema"]


class PipelineFileError(CatbuilderError, ValueError):
    """A pipeline file that cannot be run as written (one line: where and why)."""


@cache
def own_schema() -> dict[str, Any]:
    """The pipeline file's own sections as schema.yaml writes them (cached: do not
    change it); :func:`schema` adds the configuration sections and the steps."""
    return yaml.safe_load((Path(__file__).with_name("schema.yaml")).read_text())


def schema() -> dict[str, Any]:
    """The pipeline file's JSON Schema, with the configuration sections added."""
    from catbuilder import config

    s = copy.deepcopy(own_schema())
    s.pop("config-values", None)
    s["properties"]["steps"]["items"] = {"enum": list(STEP_NAMES)}
    for section in config.defaults():
        s["properties"].setdefault(
            section,
            {"type": "object", "description": f"configuration section {section} (this run only)"},
        )
    return s


def config_value_rules() -> dict[str, Any]:
    """Allowed values of configuration keys in a pipeline file (dotted key -> JSON Schema)."""
    return copy.deepcopy(own_schema()["config-values"])


@dataclass
class PipelineSpec:
    """A checked pipeline file.

    Attributes
    ----------
    path
        The file (None for a spec made from a mapping).
    data
        Its pipeline sections (paths as written).
    config
        Its configuration sections, nested as in ``catbuilder.yaml``.
    workdir
        Absolute output directory.
    base
        Directory relative input paths are resolved against.
    """

    path: Path | None
    data: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    workdir: Path = Path("catbuilder-run")
    base: Path = Path(".")

    @property
    def name(self) -> str:
        return str(self.data.get("name") or (self.path.stem if self.path else "pipeline"))

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.data.get(name) or {})

    def resolve(self, value: str) -> Path:
        """An input path: ``{mock}``/``{workdir}`` filled in, relative to the file."""
        text = str(value).format(mock=self.workdir / "mock", workdir=self.workdir)
        text = os.path.expanduser(os.path.expandvars(text))
        p = Path(text)
        return p if p.is_absolute() else self.base / p

    def tile_inputs(self, section: str = "inputs") -> list[Path]:
        """Tile paths: directories and files as given, globs expanded (sorted);
        ``section``: ``inputs`` (the survey to classify) or ``selftrain.labelled``."""
        given = self.labelled_inputs() if section != "inputs" else self.section("inputs")
        given = given.get("tiles")
        items = [given] if isinstance(given, str) else list(given or [])
        out: list[Path] = []
        for item in items:
            p = self.resolve(item)
            if glob.has_magic(str(p)):
                found = sorted(Path(m) for m in glob.glob(str(p)))
                out += found or [p]  # a pattern that matches nothing is reported as missing
            else:
                out.append(p)
        return out

    def labelled_inputs(self) -> dict[str, Any]:
        """The labelled survey's inputs of a ``selftrain`` section (empty without one)."""
        return dict(self.section("selftrain").get("labelled") or {})

    def steps(self) -> list[str]:
        """The steps this file asks for, in run order."""
        asked = self.data.get("steps")
        if asked is not None:
            return [s for s in STEP_NAMES if s in asked]
        optional = {"mock", "selftrain"}
        out = [s for s in STEP_NAMES if s not in optional or s in self.data]
        if self.section("model").get("saved") or "selftrain" in self.data:
            out.remove("train")  # a saved model, or self-training's, classifies the survey
        return out


def _near(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "text",
    "null": "null",
    "object": "a mapping",
    "array": "a list",
    "boolean": "true or false",
}


def _message(err) -> str:
    """One line for a jsonschema error: the key, what is wrong, what is allowed."""
    where = _where(err.absolute_path)
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in known]
        key = extra[0] if extra else "?"
        full = f"{where}.{key}" if err.absolute_path else key
        return (
            f"unknown key {full!r}{_near(str(key), known)} "
            f"(known under {where}: {', '.join(known)})"
        )
    if err.validator == "enum":
        allowed = ", ".join(map(str, err.validator_value))
        return f"{where}: {err.instance!r} is not allowed; use one of {allowed}" + _near(
            str(err.instance), [str(v) for v in err.validator_value]
        )
    if err.validator in ("oneOf", "anyOf"):
        words: list[str] = []  # allowed words, from enums at any depth
        other: list[str] = []
        for sub in err.validator_value:
            items = sub.get("items", {}) if sub.get("type") == "array" else {}
            if "enum" in sub or "enum" in items:
                words += [str(v) for v in sub.get("enum", items.get("enum", []))]
            elif "pattern" in sub:
                other.append(f"text like {sub['pattern'].strip('^$')}")
            elif "type" in sub:
                other.append(
                    _TYPE_WORDS.get(str(sub["type"]), str(sub["type"]))
                    + (f" (minimum {sub['minimum']})" if "minimum" in sub else "")
                    + (f" with {', '.join(sub['required'])}" if "required" in sub else "")
                )
        words = list(dict.fromkeys(words))
        bad = err.instance
        if isinstance(bad, list):  # name the bad item of a list
            bad = next((v for v in bad if str(v) not in words), bad)
        allowed = ", ".join(words + other)
        desc = err.schema.get("description")
        return (
            f"{where}: {bad!r} is not allowed"
            + (f" ({desc})" if desc else "")
            + f"; use {allowed}"
            + _near(str(bad), words)
        )
    if err.validator == "required":
        return f"{where}: {err.message}"
    return f"{where}: {err.message}"


def _check_config_sections(cfg: dict[str, Any], where: str) -> None:
    import jsonschema

    from catbuilder import config

    try:
        config.validate(cfg)
    except config.ConfigKeyError as err:
        text = str(err).replace(f"'{config.PREFIX}.", "'")  # keys as the file writes them
        raise PipelineFileError(f"{where}: {text}") from None
    rules = config_value_rules()
    for key, rule in rules.items():
        node: Any = cfg
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if node is _MISSING:
            continue
        errors = sorted(jsonschema.Draft202012Validator(rule).iter_errors(node), key=str)
        if errors:
            err = errors[0]
            err.path.extendleft(reversed(key.split(".")))  # report the full key
            raise PipelineFileError(f"{where}: {_message(err)}") from None


_MISSING = object()


def load_spec(
    source: str | os.PathLike[str] | dict[str, Any],
    *,
    workdir: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> PipelineSpec:
    """Read and check a pipeline file (or a mapping with the same content).

    Parameters
    ----------
    source
        Path of a YAML file, or the mapping itself.
    workdir
        Output directory, over the file's ``workdir``. A relative path given
        here resolves against the current directory, as the shell means it;
        paths written inside the file resolve against the file's folder.
    overrides
        Nested values merged over the file's (for example from the command line).

    Raises
    ------
    PipelineFileError
        One line naming the file, the bad key or value, what is allowed and the
        nearest known key.
    """
    import jsonschema

    from catbuilder import config

    if isinstance(source, dict):
        path, data, where = None, copy.deepcopy(source), "pipeline"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise PipelineFileError(f"{path}: no such pipeline file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise PipelineFileError(config.yaml_error(path, err)) from None
    if not isinstance(data, dict):
        raise PipelineFileError(f"{where}: a pipeline file is a mapping of sections")
    if overrides:
        data = _merge(data, overrides)
    sch = schema()
    errors = list(jsonschema.Draft202012Validator(sch).iter_errors(data))
    if errors:
        err = min(errors, key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
        raise PipelineFileError(f"{where}: {_message(err)}")
    own = set(own_schema()["properties"])
    cfg = {k: v for k, v in data.items() if k not in own}
    cfg = _merge(cfg, data.get("catbuilder") or {})
    _check_config_sections(cfg, where)
    pdata = {k: v for k, v in data.items() if k in own and k != "catbuilder"}
    if "inputs" not in pdata:
        raise PipelineFileError(f"{where}: no 'inputs' section (tiles and sources to classify)")
    base = path.parent.resolve() if path else Path.cwd()
    if workdir is not None:  # the caller's path: relative to where they are
        wd = Path.cwd() / Path(os.path.expanduser(str(workdir)))
    else:  # the file's own (or the default beside it): relative to the file
        wd = pdata.get("workdir") or (f"{path.stem}-run" if path else "catbuilder-run")
        wd = base / Path(os.path.expanduser(str(wd)))
    spec = PipelineSpec(path, pdata, cfg, wd.resolve(), base)
    asked = pdata.get("steps") or []
    if "train" in asked and spec.section("model").get("saved"):
        raise PipelineFileError(f"{where}: steps has train, and model.saved names a saved model")
    del config  # imported to register plugin defaults before validation
    return spec


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
