"""The repository's shape: dependencies agree, notebooks are clean, the book config is single-source."""

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))

COLAB_CELL = '''# Set-up: on Google Colab, fetch glasslab (code and data) and install it; elsewhere nothing happens.
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run(["git", "clone", "--depth", "1", "https://github.com/glasslab-course/glasslab", "/content/glasslab"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "/content/glasslab[sim]"], check=True)
    sys.path.insert(0, "/content/glasslab")
    from google.colab import output
    output.enable_custom_widget_manager()  # ipywidgets 8 widgets (the 3D viewers) in Colab'''


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _conda_alias(name: str) -> str:
    return {"openmm": "openmm"}.get(name, name)


def test_environment_yml_lists_the_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    env_text = (ROOT / "environment.yml").read_text()
    listed = set()
    for line in env_text.split("dependencies:", 1)[1].splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.\-]+)", line)
        if m and m.group(1) not in ("pip", "python", "-e"):
            listed.add(_name(m.group(1)))
    assert {_conda_alias(n) for n in wanted} <= listed, f"missing from environment.yml: {wanted - listed}"
    assert listed - wanted == set(), f"environment.yml lists more than pyproject.toml: {listed - wanted}"


def test_book_configuration_is_single_source():
    for name in ("_config.yml", "_toc.yml"):
        link = ROOT / "book" / name
        assert link.is_symlink() and link.resolve() == (ROOT / name).resolve()


def test_every_toc_entry_exists():
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"(?:file|root):\s*(\S+)", toc)
    assert files
    for f in files:
        assert any((ROOT / "book" / f"{f}{ext}").exists() for ext in (".md", ".ipynb")), f


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text() and "make book" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_clean_and_starts_with_the_colab_cell(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") for c in code), "notebooks are committed without outputs"
    assert all(c.get("execution_count") is None for c in code), "notebooks are committed without execution counts"
    assert "".join(code[0]["source"]).strip() == COLAB_CELL
    assert COLAB_CELL in (ROOT / "book" / "intro.md").read_text()
    first_md = "".join(next(c for c in nb["cells"] if c["cell_type"] == "markdown")["source"])
    assert "What you will learn" in first_md or "what you will learn" in first_md.lower()


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert re.search(rf"file:\s*{path.stem}\b", toc), f"{path.name} is not in _toc.yml"
