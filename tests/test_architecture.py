"""The shape of the package: floors that point down, modules of one job, the
project speaking of itself. Checked with the field's tools (import-linter,
grimp) where one exists."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [ROOT / "catbuilder", *sorted((ROOT / "plugins").glob("*/src"))]


def test_the_layers_contract_holds():
    """``lint-imports`` (import-linter) checks [tool.importlinter] in pyproject.toml."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    res = subprocess.run([exe], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and "KEPT" in res.stdout


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in graph.modules:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_no_import_cycles():
    import grimp

    graph = grimp.build_graph("catbuilder")
    assert _cycles(graph) == []
    # the check finds a cycle where there is one
    graph.add_import(importer="catbuilder.config", imported="catbuilder.cli")
    assert any("catbuilder.config" in c for c in _cycles(graph))


def test_no_module_over_500_lines():
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text().splitlines())
        for src in SOURCES
        for p in src.rglob("*.py")
    }
    assert len(sizes) > 50
    assert {p: n for p, n in sizes.items() if n > 500} == {}


PROCESS_WORDS = re.compile(r"\bstop [0-9]|\bthe issue\b|\bissue's\b", re.IGNORECASE)


def test_code_and_docs_speak_of_the_project_not_its_history():
    bases = [*SOURCES, *(ROOT / d for d in ("docs", "tests", "examples", "benchmarks"))]
    suffixes = {".py", ".md", ".yaml", ".rst", ".ipynb", ".toml"}
    files = [
        p
        for base in bases
        for p in base.rglob("*")
        if p.suffix in suffixes and "_build" not in p.parts
    ]
    files += [ROOT / "README.md", ROOT / "conftest.py", ROOT / "pyproject.toml"]
    hits = [
        f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
        for p in files
        if p != Path(__file__)
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if PROCESS_WORDS.search(line)
    ]
    assert hits == []
