"""The documentation builds with warnings as errors, and its generated pages are current."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_docs_build_with_warnings_as_errors(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         str(ROOT / "docs"), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-4000:]
    for page in ("index", "user-guide", "slurm", "configuration", "cli", "api"):
        assert (tmp_path / "html" / f"{page}.html").is_file(), page
    api = (tmp_path / "html" / "api.html").read_text()
    assert "build_stack" in api and "Pipeline" in api
    assert (tmp_path / "html" / "generated" / "catbuilder.Pipeline.html").is_file()


def test_the_api_page_lists_the_public_api():
    """docs/api.md's autosummary tables name exactly what ``import catbuilder`` offers."""
    import re

    import catbuilder

    text = (ROOT / "docs" / "api.md").read_text()
    listed = re.findall(r"^   ([A-Za-z_]+)$", text, flags=re.M)
    assert sorted(listed) == sorted(catbuilder.API)


def test_configuration_reference_is_current():
    from catbuilder.config_reference import reference_markdown

    text = reference_markdown()
    assert (ROOT / "docs" / "configuration.md").read_text() == text, (
        "docs/configuration.md is stale: "
        "python -m catbuilder.config_reference > docs/configuration.md"
    )
    # every packaged section and every pipeline section is on the page
    from catbuilder import config

    for section in config.defaults():
        assert f"\n### {section}" in text, section
    for key in ("inputs.tiles", "model.saved", "embeddings.anomaly", "steps"):
        assert f"| `{key}` |" in text, key
