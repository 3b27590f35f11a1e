"""The configuration reference page (``docs/configuration.md``), generated from
the packaged YAML files: the pipeline file's schema, ``catbuilder.yaml`` with
its comments, and every plugin's own YAML.

``python -m catbuilder.config_reference > docs/configuration.md``; a test fails
when the page is out of date.
"""

from __future__ import annotations

import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

__all__ = ["reference_markdown"]


def _allowed(rule: dict[str, Any]) -> str:
    """A short text of what a JSON Schema allows."""
    if "enum" in rule:
        return " | ".join(f"`{v}`" for v in rule["enum"])
    for key in ("oneOf", "anyOf"):
        if key in rule:
            return " or ".join(_allowed(r) for r in rule[key])
    t = rule.get("type")
    if t == "array":
        return f"list of {_allowed(rule.get('items', {})) or 'values'}"
    if isinstance(t, list):
        t = " or ".join(t)
    text = str(t or "")
    if "pattern" in rule:
        text += f" like `{rule['pattern'].strip('^$')}`"
    if "minimum" in rule:
        text += f" ≥ {rule['minimum']}"
    return text


def _rows(props: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    rows = []
    for key, rule in props.items():
        name = f"{prefix}{key}"
        desc = " ".join(str(rule.get("description", "")).split())
        if rule.get("type") == "object" and "properties" in rule:
            rows.append((name, "section", desc))
            rows += _rows(rule["properties"], f"{name}.")
        else:
            rows.append((name, _allowed(rule), desc))
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a bar inside a Markdown table cell


def _table(rows: list[tuple[str, str, str]], head: tuple[str, str, str]) -> list[str]:
    out = [f"| {head[0]} | {head[1]} | {head[2]} |", "|---|---|---|"]
    out += [f"| `{a}` | {_cell(b)} | {_cell(c)} |" for a, b, c in rows]
    return out


def _sections(text: str) -> list[tuple[str, str]]:
    """``catbuilder.yaml`` cut into its top-level sections, each with the comment
    lines (at the sections' indentation) just above it."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"^  [a-z][a-z-]*:\s*$", line)]
    heads = []
    for i in starts:
        head = i
        while head > 0 and re.match(r"^(  #.*|\s*)$", lines[head - 1]):
            head -= 1
        heads.append(head)
    out = []
    for j, i in enumerate(starts):
        end = heads[j + 1] if j + 1 < len(starts) else len(lines)
        body = [line[2:] if line.startswith("  ") else line for line in lines[heads[j] : end]]
        out.append((lines[i].strip().rstrip(":"), "\n".join(body).strip("\n")))
    return out


def reference_markdown() -> str:
    """The page: pipeline sections, then every configuration section as shipped."""
    from catbuilder import config
    from catbuilder.pipeline.spec import own_schema

    schema = own_schema()
    parts = [
        "# Configuration reference",
        "",
        "Generated from the packaged YAML files by",
        "`python -m catbuilder.config_reference > docs/configuration.md`;",
        "a test fails when it is out of date.",
        "",
        "## Pipeline files",
        "",
        "A pipeline file (`catbuilder run FILE`, `catbuilder.Pipeline.from_yaml`) has",
        "the pipeline's own sections below, and any section of the configuration",
        "further down (`cutouts:`, `train:`, `cluster:` ...), which applies to that run",
        "only. Everything is checked before a step runs. Relative paths are relative to",
        "the file; `{mock}` is `<workdir>/mock`, `{workdir}` the work directory.",
        "",
        *_table(_rows(schema["properties"]), ("key", "allowed", "what it is")),
        "",
        "Allowed values of configuration keys, checked in pipeline files:",
        "",
        *_table(
            [
                (k, _allowed(v), " ".join(str(v.get("description", "")).split()))
                for k, v in schema["config-values"].items()
            ],
            ("key", "allowed", "note"),
        ),
        "",
        "## Configuration (`catbuilder.yaml`)",
        "",
        "Every key can be set in a user YAML file (`catbuilder --config FILE`, a",
        "`catbuilder:` section in `~/.config/dask/*.yaml`), by environment variables",
        "(`CATBUILDER_CUTOUTS__SIZE=96`), in a pipeline file, or by keyword arguments.",
        "The packaged defaults, section by section:",
    ]
    text = (Path(config.__file__).with_name("catbuilder.yaml")).read_text()
    for name, body in _sections(text):
        parts += ["", f"### {name}", "", "```yaml", body, "```"]
    eps = sorted(entry_points(group="catbuilder.config"), key=lambda e: e.name)
    if eps:
        parts += [
            "",
            "## Plugins' configuration",
            "",
            "Plugin packages add their own sections (entry-point group `catbuilder.config`):",
        ]
    for ep in eps:
        path = Path(ep.load())
        parts += [
            "",
            f"### {ep.name} (`{path.name}`)",
            "",
            "```yaml",
            path.read_text().rstrip(),
            "```",
        ]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(reference_markdown())
