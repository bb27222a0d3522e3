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
    import os, shutil, subprocess
    if not os.path.isdir("/content/glasslab/.git"):  # cloned once: re-running after a restart is fine
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/glasslab-course/glasslab", "/content/glasslab"], check=True)
    extras = "sim,cuda" if shutil.which("nvidia-smi") else "sim"  # OpenMM's CUDA platform on a GPU runtime
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", f"/content/glasslab[{extras}]"], check=True)
    if "/content/glasslab" not in sys.path:
        sys.path.insert(0, "/content/glasslab")
    from google.colab import output
    output.enable_custom_widget_manager()  # the 3D viewers (ipywidgets) in Colab'''


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
    # plain copies, not symlinks (a Windows clone turns symlinks into text files): kept identical
    for name in ("_config.yml", "_toc.yml"):
        copy = ROOT / "book" / name
        assert not copy.is_symlink(), f"book/{name} must be a plain file (symlinks break Windows clones)"
        assert copy.read_bytes() == (ROOT / name).read_bytes(), f"book/{name} differs from {name}: copy it over"


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
    assert code[0].get("metadata", {}).get("tags") == ["hide-cell"], "the Colab set-up is folded in the built book"
    assert COLAB_CELL in (ROOT / "book" / "intro.md").read_text()
    first_md = "".join(next(c for c in nb["cells"] if c["cell_type"] == "markdown")["source"])
    assert "What you will learn" in first_md or "what you will learn" in first_md.lower()


def test_every_notebook_is_in_the_toc():
    toc = (ROOT / "_toc.yml").read_text()
    for path in NOTEBOOKS:
        assert re.search(rf"file:\s*{path.stem}\b", toc), f"{path.name} is not in _toc.yml"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_solution_is_folded(path):
    """Code and output of a solution are hidden: in the built book (the ``hide-cell`` tag, one
    dropdown for both) and in JupyterLab and Colab (``jupyter.source_hidden``/``outputs_hidden``,
    ``cellView: form``); every exercise is followed by its ``# Solution`` cell."""
    cells = json.loads(path.read_text())["cells"]
    text = [c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in cells]
    for i, (cell, source) in enumerate(zip(cells, text)):
        if cell["cell_type"] == "markdown" and re.search(r"\{admonition\}\s*Exercise", source):
            following = next((j for j in range(i + 1, len(cells)) if cells[j]["cell_type"] == "code"), None)
            assert following is not None and text[following].lstrip().startswith("# Solution"), \
                f"cell {i}: an exercise without a '# Solution' code cell after it"
        if cell["cell_type"] == "code" and source.lstrip().startswith("# Solution"):
            meta = cell.get("metadata", {})
            assert "hide-cell" in meta.get("tags", []), f"cell {i}: a solution needs the hide-cell tag"
            assert not {"hide-input", "hide-output"} & set(meta.get("tags", [])), f"cell {i}: use hide-cell only"
            assert meta.get("jupyter", {}).get("source_hidden") is True, f"cell {i}: jupyter.source_hidden"
            assert meta.get("jupyter", {}).get("outputs_hidden") is True, f"cell {i}: jupyter.outputs_hidden"
            assert meta.get("cellView") == "form", f"cell {i}: cellView form (collapsed in Colab)"


def test_colab_setup_cell_installs_once_and_survives_a_rerun(tmp_path):
    """The set-up cell in a simulated Colab runtime: a fresh virtual environment that sees a
    preinstalled stack (this environment's packages, as Colab's torch and widgets), a fake
    ``google.colab`` module, no GPU. Run twice, as after a runtime restart: it clones once,
    installs glasslab and nothing else (Colab's torch and widgets are kept), and imports."""
    import subprocess
    import sys
    import venv

    runtime = tmp_path / "runtime"
    venv.create(runtime, with_pip=True)
    site = next((runtime / "lib").glob("python3*/site-packages"))
    preinstalled = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "colab_preinstalled.pth").write_text("\n".join(preinstalled) + "\n")
    fake = tmp_path / "fake" / "google" / "colab"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "output.py").write_text("calls = []\ndef enable_custom_widget_manager():\n    calls.append(1)\n")
    content = tmp_path / "content" / "glasslab"
    cell = (COLAB_CELL.replace("/content/glasslab", str(content))
            .replace("https://github.com/glasslab-course/glasslab", f"file://{ROOT}"))
    script = "\n".join([
        f"import sys; sys.path.insert(0, {str(tmp_path / 'fake')!r}); import google.colab",
        cell, cell,
        "import glasslab, google.colab.output as out",
        "print(glasslab.__file__); print(len(out.calls))",
    ])
    env = {"PATH": f"{runtime / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "COLAB_RELEASE_TAG": "simulated",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run([str(runtime / "bin" / "python"), "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    path, calls = done.stdout.split()[-2:]
    assert Path(path).resolve().is_relative_to(content.resolve()) and calls == "2"
    installed = {p.name.split("-")[0].lower() for p in site.iterdir() if p.name.endswith((".dist-info", ".pth"))}
    assert installed <= {"glasslab", "__editable__.glasslab", "pip", "setuptools", "colab_preinstalled.pth",
                         "distutils"}, installed


def test_wheel_ships_the_kernel_source_and_the_data_registry(tmp_path):
    import shutil
    import subprocess
    import sys
    import zipfile

    source = tmp_path / "source"  # what a wheel is built from, copied: the build leaves nothing in the clone
    shutil.copytree(ROOT / "glasslab", source / "glasslab", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(source)], check=True)
    names = zipfile.ZipFile(next(tmp_path.glob("glasslab-*.whl"))).namelist()
    assert "glasslab/models/fused_kernel.cpp" in names and "glasslab/registry.txt" in names
