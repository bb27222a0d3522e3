"""Build a small book and check how it renders in headless Chromium (`make check-book`).

Not a pytest test (it builds a book and needs Chromium): it builds chapter 8 (spherical
harmonics) and a rendering sample (a table printed with ``display(Markdown(...))``, prints spread
over time, a long line, a folded solution) into a temporary folder with the book's own
``_config.yml``, then checks in headless Chromium that

- the table is an HTML ``<table>``, the prints of one cell are one output box, the solution's
  code and output sit in one closed ``<details>`` dropdown, and long lines wrap (no clipping);
- no cell output shows the absolute path of this machine's clone or home folder;
- a spherical harmonic drawn by ``glasslab.viz.widgets.spherical_harmonic_view`` shows red
  (positive) and blue (negative) lobes that fill most of the canvas (pixels of a screenshot);
- the periodic box of a shipped snapshot drawn by ``glasslab.viz.widgets.box_view`` covers most of
  its canvas.

3Dmol.js comes from a CDN; offline, give a local copy with ``--3dmol-js PATH`` (or
``$GLASSLAB_3DMOL_JS``; e.g. ``npm pack 3dmol`` and its ``build/3Dmol-min.js``). Screenshots are
kept in the output folder (printed) for a look by eye. Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/3dmol@[^\"']*?/build/3Dmol-min\.js")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                  "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]

SAMPLE = {
    "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "# Rendering sample\n\nWhat you will learn: nothing."},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source":
            "import time\nfrom IPython.display import Markdown, display\n"
            "display(Markdown('| model | parameters |\\n|---|---|\\n| SE(3) l_max=3 | 23 177 |\\n| Bapst GNN | 70 721 |'))"},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source":
            "print('first line')\ntime.sleep(0.3)\nprint('second line')\ntime.sleep(0.3)\nprint('third line')\n"
            "print('a long line ' + 'x' * 400)"},
        {"cell_type": "markdown", "metadata": {}, "source": ":::{admonition} Exercise 1\nSum.\n:::"},
        {"cell_type": "code", "execution_count": None, "outputs": [],
         "metadata": {"tags": ["hide-cell"], "jupyter": {"source_hidden": True, "outputs_hidden": True}},
         "source": "# Solution\nprint('THE ANSWER IS', 6 * 7)"},
    ],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 4,
}


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("check-book: Chromium not found (Debian: apt-get install chromium)")


def browse(url: str, *args: str, size=(1200, 900), timeout=120) -> subprocess.CompletedProcess:
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=15000",
           *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def localise_3dmol(folder: Path, js: Path | None) -> None:
    if js is None:
        return
    for page in folder.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if CDN.search(text):
            page.write_text(CDN.sub(js.resolve().as_uri(), text), encoding="utf-8")


def build(workdir: Path, chapters: list[str]) -> Path:
    src = workdir / "book"
    src.mkdir()
    for name in ("intro.md", "references.bib", "_config.yml"):
        shutil.copy(BOOK / name, src / name)
    if (BOOK / "_static").is_dir():
        shutil.copytree(BOOK / "_static", src / "_static")
    for chapter in chapters:
        shutil.copy(BOOK / f"{chapter}.ipynb", src / f"{chapter}.ipynb")
    (src / "render_sample.ipynb").write_text(json.dumps(SAMPLE, indent=1))
    toc = "format: jb-book\nroot: intro\nchapters:\n" + "".join(f"  - file: {c}\n" for c in [*chapters, "render_sample"])
    (src / "_toc.yml").write_text(toc)
    config = (src / "_config.yml").read_text().replace("execute_notebooks: cache", "execute_notebooks: force")
    (src / "_config.yml").write_text(config)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    jb = Path(sys.executable).with_name("jupyter-book")
    run = subprocess.run([str(jb), "build", str(src)], capture_output=True, text=True, env=env)
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-4000:])
        sys.exit("check-book: the small book did not build")
    return src / "_build" / "html"


def check_sample(html: Path, out: Path, failures: list[str]) -> None:
    dom = browse((html / "render_sample.html").as_uri(), "--dump-dom").stdout
    (out / "render_sample.dom.html").write_text(dom)
    if "<table" not in dom.split("first line")[0]:
        failures.append("sample: the Markdown table printed from code is not an HTML <table>")
    stream = re.findall(r'<div class="output stream[^"]*"', dom)
    if len(stream) != 2:  # one for the three prints, one for the solution
        failures.append(f"sample: expected 2 stream output boxes (merged), found {len(stream)}")
    solution = re.search(r"<details[^>]*>(?:(?!</details>).)*THE ANSWER IS", dom, re.S)
    if not solution or " open" in solution.group(0).split(">", 1)[0]:
        failures.append("sample: the solution's output is not inside a closed <details> dropdown")
    browse((html / "render_sample.html").as_uri(), f"--screenshot={out / 'render_sample.png'}", size=(1000, 1100))


def check_paths(html: Path, failures: list[str]) -> None:
    machine = [str(ROOT), str(Path.home())]
    for page in html.glob("*.html"):
        outputs = re.findall(r'<div class="cell_output[^"]*">(.*?)</div>\s*</div>', page.read_text(encoding="utf-8"), re.S)
        for text in outputs:
            for path in machine:
                if path + "/" in text:
                    failures.append(f"{page.name}: a cell output shows the machine path {path}")
                    break


def screenshot(view, out: Path, name: str, js: Path | None):
    """RGB pixels (H, W, 3) of a view rendered alone in headless Chromium, or None."""
    from matplotlib.image import imread

    page = out / f"{name}.html"
    html = f"<!DOCTYPE html><html><body style='margin:0;background:white'>{view.html()}</body></html>"
    page.write_text(CDN.sub(js.resolve().as_uri(), html) if js else html)
    png = out / f"{name}.png"
    browse(page.as_uri(), f"--screenshot={png}", size=view.size)
    return imread(png)[..., :3] if png.exists() else None


def check_spherical_harmonic(out: Path, js: Path | None, failures: list[str]) -> None:
    import numpy as np

    from glasslab.viz import widgets

    rgb = screenshot(widgets.spherical_harmonic_view(3, 2, width=400, height=400), out, "sh_view", js)
    if rgb is None:
        failures.append("spherical harmonic: no screenshot")
        return
    red = (rgb[..., 0] > 0.5) & (rgb[..., 1] < 0.35) & (rgb[..., 2] < 0.35)
    blue = (rgb[..., 2] > 0.45) & (rgb[..., 0] < 0.35)
    drawn = rgb.sum(axis=2) < 2.9
    rows, cols = np.nonzero(red | blue)
    extent = max((np.ptp(rows) + 1) / rgb.shape[0], (np.ptp(cols) + 1) / rgb.shape[1]) if len(rows) else 0.0
    print(f"spherical harmonic l=3, m=2: red {red.mean():.1%}, blue {blue.mean():.1%}, drawn {drawn.mean():.1%} "
          f"of the canvas; the lobes span {extent:.0%} of it")
    if red.mean() < 0.01 or blue.mean() < 0.01:
        failures.append("spherical harmonic: the lobes are not coloured red and blue by sign")
    if extent < 0.5:
        failures.append(f"spherical harmonic: the shape spans only {extent:.0%} of the canvas (not zoomed to fit)")


def check_box_view(out: Path, js: Path | None, failures: list[str]) -> None:
    from glasslab import data_dir, io
    from glasslab.viz import widgets

    snapshot = io.read_h5(data_dir() / "ka3d_T0.64.h5", indices=[0])[0]
    rgb = screenshot(widgets.box_view(snapshot.positions, snapshot.types, snapshot.box), out, "box_view", js)
    if rgb is None:
        failures.append("box view: no screenshot")
        return
    drawn = (rgb.sum(axis=2) < 2.9).mean()
    print(f"box view of a shipped snapshot: particles and edges cover {drawn:.0%} of the canvas")
    if drawn < 0.6:
        failures.append(f"box view: the box covers only {drawn:.0%} of the canvas (not zoomed to fit)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", nargs="*", default=["08_spherical_harmonics"])
    parser.add_argument("--3dmol-js", dest="js", type=Path, default=os.environ.get("GLASSLAB_3DMOL_JS"))
    parser.add_argument("--out", type=Path, default=None, help="folder for the book and screenshots (default: a temporary one)")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="glasslab-check-book-"))
    out.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    check_spherical_harmonic(out, args.js, failures)
    check_box_view(out, args.js, failures)
    html = build(out, args.chapters)
    localise_3dmol(html, args.js)
    check_sample(html, out, failures)
    check_paths(html, failures)
    for chapter in args.chapters:
        browse((html / f"{chapter}.html").as_uri(), f"--screenshot={out / (chapter + '.png')}", size=(1200, 6000),
               timeout=180)
    print(f"book and screenshots: {out}")
    for failure in failures:
        print("FAIL", failure)
    print("check-book:", "all checks passed" if not failures else f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
