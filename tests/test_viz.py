import json
import re
import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.figure import Figure
from scipy.special import sph_harm_y

from conftest import random_liquid
from glasslab import analysis
from glasslab.io import Relaxation, Snapshot
from glasslab.viz import plots, widgets

N = 200
BOX = np.full(3, (N / 1.2) ** (1 / 3))  # density 1.2, L ≈ 5.5


@pytest.fixture
def config():
    rng = np.random.default_rng(0)
    positions, types, _ = random_liquid(N, rng=rng)
    positions[0] = [0.2, 0.2, 0.2] + BOX * [1, -2, 0]  # unwrapped, near a corner
    positions[1] = [BOX[0] - 0.3, 0.2, 0.2]  # across the x boundary from particle 0
    return positions, types, rng.random(N)


def brute_force_neighbours(positions, box, centre, cutoff):
    d = positions - positions[centre]
    d -= box * np.round(d / box)
    dist = np.linalg.norm(d, axis=1)
    dist[centre] = np.inf
    return set(np.flatnonzero(dist < cutoff).tolist())


def js_calls(view, name):
    """The JSON arguments of every ``viewer.<name>(...)`` call in a view's script."""
    return [json.loads(f"[{m}]") for m in re.findall(rf"\.{name}\((.*)\);\n", view.startjs)]


# --------------------------------------------------------------------------- colours

def test_values_to_hex_handles_nan_constant_and_limits():
    colours = widgets.values_to_hex([0.0, np.nan, 1.0, np.inf], "viridis")
    assert colours == ["#440154", widgets.NAN_COLOUR, "#fde725", widgets.NAN_COLOUR]
    middle = widgets.values_to_hex([0.5], "viridis", 0, 1)[0]
    assert widgets.values_to_hex(np.full(5, 3.2), "viridis") == [middle] * 5
    assert widgets.values_to_hex([np.nan, np.nan]) == [widgets.NAN_COLOUR] * 2
    assert widgets.values_to_hex([-5.0, 0.5, 7.0], "viridis", vmin=0, vmax=1) == ["#440154", middle, "#fde725"]
    assert len(set(widgets.values_to_hex(np.linspace(0, 1, 500), levels=8))) == 8
    with pytest.raises(ValueError, match="one-dimensional"):
        widgets.values_to_hex(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="vmax"):
        widgets.values_to_hex([1.0], vmin=1, vmax=0)


# --------------------------------------------------------------------------- neighbourhood

def test_neighbourhood_view_draws_each_neighbour_once(config):
    positions, types, values = config
    centre, cutoff = 17, 1.8
    view = widgets.neighbourhood_view(positions, types, BOX, centre, cutoff, values=values, label="prop")
    expected = brute_force_neighbours(positions, BOX, centre, cutoff)
    scene = view.scene
    assert scene.centre == centre and scene.indices[0] == centre
    assert set(scene.indices[1:].tolist()) == expected and len(scene.indices) == len(expected) + 1
    assert scene.edges == len(expected)
    spheres, cylinders = js_calls(view, "addSphere"), js_calls(view, "addCylinder")
    assert len(spheres) == len(expected) + 2  # centre, neighbours, cutoff shell
    assert len(cylinders) == len(expected)
    shell = [s[0] for s in spheres if s[0]["radius"] == cutoff]
    assert len(shell) == 1 and shell[0]["opacity"] < 1
    assert [s[0]["color"] for s in spheres[:-1]] == [widgets.values_to_hex(values)[k] for k in scene.indices]
    radii = np.array([s[0]["radius"] for s in spheres[:-1]])
    assert np.allclose(radii, np.where(types[scene.indices] == 0, 0.5, 0.44) * 0.6)

    bare = widgets.neighbourhood_view(positions, types, BOX, centre, cutoff, show_edges=False, show_shell=False)
    assert len(js_calls(bare, "addSphere")) == len(expected) + 1
    assert js_calls(bare, "addCylinder") == [] and bare.scene.edges == 0
    assert bare.scene.colours == [widgets.TYPE_COLOURS[t] for t in types[bare.scene.indices]]


def test_neighbourhood_view_uses_the_minimum_image(config):
    positions, types, _ = config
    view = widgets.neighbourhood_view(positions, types, BOX, 0, cutoff=2.0)
    scene = view.scene
    assert np.allclose(scene.positions[0], [0.2, 0.2, 0.2])  # centre wrapped into the box
    k = scene.indices.tolist().index(1)
    assert np.allclose(scene.positions[k], [-0.3, 0.2, 0.2])  # neighbour drawn across the boundary
    assert '{"x": -0.3, "y": 0.2, "z": 0.2}' in view.startjs
    offsets = scene.positions[1:] - scene.positions[0]
    assert (np.linalg.norm(offsets, axis=1) < 2.0).all()
    images = (scene.positions - positions[scene.indices]) / BOX
    assert np.allclose(images, np.round(images))  # each drawn position is a periodic image


def test_neighbourhood_view_rejects_bad_input(config):
    positions, types, values = config
    with pytest.raises(ValueError, match="centre 200 is out of range"):
        widgets.neighbourhood_view(positions, types, BOX, N)
    with pytest.raises(ValueError, match="centre"):
        widgets.neighbourhood_view(positions, types, BOX, 1.5)
    with pytest.raises(ValueError, match="positions must have shape"):
        widgets.neighbourhood_view(positions[:, :2], types, BOX, 0)
    with pytest.raises(ValueError, match="types must have shape"):
        widgets.neighbourhood_view(positions, types[:-1], BOX, 0)
    with pytest.raises(ValueError, match="values must have shape"):
        widgets.neighbourhood_view(positions, types, BOX, 0, values=values[:-1])
    with pytest.raises(ValueError, match="cutoff"):
        widgets.neighbourhood_view(positions, types, BOX, 0, cutoff=3.0)


def test_scene_view_renders_without_a_browser(config):
    positions, types, _ = config
    view = widgets.neighbourhood_view(positions, types, BOX, 3)
    bundle = view._repr_mimebundle_()
    assert "3Dmol" in bundle["text/html"] and "UNIQUEID" not in bundle["text/html"]
    assert view.html() != view.html()  # a fresh element id per display
    assert view.iframe().startswith("<iframe srcdoc=") and "&lt;script&gt;" in view.iframe()


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_generated_javascript_parses(config, tmp_path):
    positions, types, values = config
    views = [widgets.neighbourhood_view(positions, types, BOX, 0, values=values),
             widgets.box_view(positions, types, BOX, values=values, highlight=0.2),
             widgets.trajectory_view(np.stack([positions, positions + 0.1]), types, BOX),
             widgets.spherical_harmonic_view(3, -2, resolution=6)]
    for k, view in enumerate(views):
        script = re.search(r"<script>(.*)</script>", view.html(), re.S).group(1)
        path = tmp_path / f"view{k}.js"
        path.write_text(script)
        result = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- box and trajectory

def test_box_view_highlights_the_most_mobile(config):
    positions, types, values = config
    values = values.copy()
    values[:5] = np.nan
    view = widgets.box_view(positions, types, BOX, values=values, highlight=0.1)
    finite = np.flatnonzero(np.isfinite(values))
    top = np.sort(finite[np.argsort(values[finite])[-20:]])  # ceil(0.1 * 195) = 20
    assert np.array_equal(view.scene.indices, top)
    assert len(view.scene.faded) == N - 20 and not set(view.scene.faded) & set(top)
    assert len(js_calls(view, "addModel")) == 2 and len(js_calls(view, "addCylinder")) == 12
    assert ((view.scene.positions >= 0) & (view.scene.positions < BOX)).all()
    styled = sum(len(sel["serial"]) for sel, _ in js_calls(view, "setStyle"))
    assert styled == N
    bottom = widgets.box_view(positions, types, BOX, values=values, highlight=0.1, lowest=True)
    assert np.array_equal(bottom.scene.indices, np.sort(finite[np.argsort(values[finite])[:20]]))
    plain = widgets.box_view(positions, types, BOX)
    assert len(plain.scene.indices) == N and len(js_calls(plain, "addModel")) == 1
    with pytest.raises(ValueError, match="highlight"):
        widgets.box_view(positions, types, BOX, values=values, highlight=1.5)
    with pytest.raises(ValueError, match="highlight needs values"):
        widgets.box_view(positions, types, BOX, highlight=0.1)


def test_trajectory_view_animates_frames(config):
    positions, types, _ = config
    rng = np.random.default_rng(1)
    frames = positions + np.cumsum(rng.normal(0, 0.05, (4, N, 3)), axis=0)
    view = widgets.trajectory_view(frames, types, BOX)
    assert view.scene.frames == 4 and len(js_calls(view, "addModelsAsFrames")) == 1
    assert len(js_calls(view, "animate")) == 1
    assert np.allclose(view.scene.positions, np.mod(frames[0], BOX))
    (data, fmt, _), = js_calls(view, "addModelsAsFrames")
    lines = data.splitlines()
    assert fmt == "xyz" and len(lines) == 4 * (N + 2)
    x_last = np.array(lines[3 * (N + 2) + 2].split()[1:], dtype=float)  # particle 0 in the last frame
    assert np.allclose(x_last, np.mod(frames[0, 0], BOX) + frames[3, 0] - frames[0, 0], atol=1e-3)
    with pytest.raises(ValueError, match="frames must have shape"):
        widgets.trajectory_view(frames[0], types, BOX)


# --------------------------------------------------------------------------- spherical harmonics

def textbook_real_sh(l, m, theta, phi):
    """Real spherical harmonics of the usual z-polar tables, from scipy's complex ones."""
    y = sph_harm_y(l, abs(m), theta, phi)
    if m > 0:
        return np.sqrt(2) * (-1) ** m * y.real
    if m < 0:
        return np.sqrt(2) * (-1) ** m * y.imag
    return y.real


@pytest.mark.parametrize("l,m", [(0, 0), (1, -1), (2, 0), (3, 2), (6, -5)])
def test_spherical_harmonic_mesh_radius_is_abs_ylm(l, m):
    mesh = widgets.spherical_harmonic_mesh(l, m, resolution=10)
    assert mesh.vertices.shape == (2 * 10 * 9 + 2, 3) and mesh.faces.shape == (4 * 10 * 9, 3)
    n = mesh.directions
    assert np.allclose(np.linalg.norm(n, axis=1), 1)
    # e3nn's y axis is polar: its Y_lm(x, y, z) is the textbook Y_lm at (z, x, y)
    reference = textbook_real_sh(l, m, np.arccos(np.clip(n[:, 1], -1, 1)), np.arctan2(n[:, 0], n[:, 2]))
    assert np.allclose(mesh.values, reference, atol=1e-10)
    assert np.allclose(np.linalg.norm(mesh.vertices, axis=1), np.abs(reference), atol=1e-10)
    edges = np.sort(np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert (counts == 2).all()  # a closed surface
    assert np.array_equal(np.unique(mesh.faces), np.arange(len(n)))


def test_spherical_harmonic_view_mesh_and_sign_colours():
    view = widgets.spherical_harmonic_view(2, 1, resolution=8, show_axes=False)
    customs = [spec for (spec,) in js_calls(view, "addCustom")]
    mesh = view.scene
    # two single-colour meshes (3Dmol.js ignores per-vertex colours of custom shapes)
    assert [c["color"] for c in customs] == list(widgets.SIGN_COLOURS)
    assert all("colorArr" not in c for c in customs)
    assert sum(len(c["faceArr"]) for c in customs) == 3 * len(mesh.faces)
    positive = mesh.values[mesh.faces].mean(axis=1) >= 0
    assert len(customs[0]["faceArr"]) == 3 * positive.sum()
    for c in customs:
        assert len(c["normalArr"]) == len(c["vertexArr"]) and max(c["faceArr"]) < len(c["vertexArr"])
    # scaled to SH_SCALE so that zoomTo fills the canvas (3Dmol zooms to >= 5 units)
    radii = [np.linalg.norm([v["x"], v["y"], v["z"]]) for c in customs for v in c["vertexArr"]]
    assert max(radii) == pytest.approx(widgets.SH_SCALE, rel=1e-3)
    assert 0 < (mesh.values >= 0).sum() < len(mesh.values)
    assert len(js_calls(widgets.spherical_harmonic_view(2, 1, resolution=8), "addArrow")) == 3
    with pytest.raises(ValueError, match="order m"):
        widgets.spherical_harmonic_view(2, 3)
    with pytest.raises(ValueError, match="resolution"):
        widgets.spherical_harmonic_mesh(1, 0, resolution=2)


# --------------------------------------------------------------------------- viewers

def test_neighbourhood_viewer_redraws_on_changes(config):
    positions, types, values = config
    viewer = widgets.NeighbourhoodViewer(positions, types, BOX, arrays={"prop": values}, cutoff=1.8)
    assert viewer.redraws == 1 and viewer.view.scene.centre == 0
    first = viewer.screen.value
    viewer.particle.value = 7
    assert viewer.redraws == 2 and viewer.view.scene.centre == 7 and viewer.particle_text.value == 7
    assert viewer.screen.value != first and "i=7" in viewer.screen.value
    viewer.particle_text.value = 9
    assert viewer.view.scene.centre == 9
    viewer.colour_by.value = "prop"
    assert viewer.view.scene.label == "prop"
    assert viewer.view.scene.colours == [widgets.values_to_hex(values)[k] for k in viewer.view.scene.indices]
    viewer.edges.value = False
    assert viewer.view.scene.edges == 0 and "addCylinder" not in viewer.view.startjs
    assert viewer.redraws == 5
    with pytest.raises(ValueError, match=r"arrays\['bad'\] must have shape"):
        widgets.NeighbourhoodViewer(positions, types, BOX, arrays={"bad": values[:3]})
    with pytest.raises(ValueError, match="reserved"):
        widgets.NeighbourhoodViewer(positions, types, BOX, arrays={"type": values})


def test_neighbourhood_viewer_from_snapshot(config):
    positions, types, values = config
    snapshot = Snapshot(positions, types, BOX, 0.5, times=[0.13, 4120.0],
                        propensity=np.stack([values, 2 * values], axis=1))
    viewer = widgets.NeighbourhoodViewer.from_snapshot(snapshot, predictions={"model": values}, centre=4)
    assert list(viewer.colour_by.options) == ["type", "propensity t=0.13", "propensity t=4.12e+03", "model"]
    viewer.colour_by.value = "propensity t=4.12e+03"
    assert viewer.view.scene.centre == 4 and viewer.view.scene.label == "propensity t=4.12e+03"


def test_spherical_harmonic_viewer_keeps_m_in_range():
    viewer = widgets.SphericalHarmonicViewer(l=2, m=0, resolution=8)
    viewer.degree.value = 4
    viewer.order.value = -3
    assert (viewer.view.scene.l, viewer.view.scene.m) == (4, -3) and viewer.redraws == 3
    viewer.degree.value = 1
    assert (viewer.order.min, viewer.order.max, viewer.order.value) == (-1, 1, -1)
    assert (viewer.view.scene.l, viewer.view.scene.m) == (1, -1) and viewer.redraws == 4


# --------------------------------------------------------------------------- plots

def relaxation(temperature, tau, rng):
    lags = np.geomspace(0.01, 1000.0, 30)
    fs = np.exp(-((lags / tau) ** 0.8))
    curves = {"msd_a": 6 * 0.1 * lags / (1 + 1 / lags), "fs_a": fs, "chi4_a": 5 * fs * (1 - fs)}
    snapshots = rng.uniform(0, 1, (2, N, 3)) * BOX
    return Relaxation(temperature, lags, analysis.tau_alpha(lags, fs), (rng.random(N) < 0.2).astype(int),
                      BOX, snapshots, curves)


@pytest.fixture
def records():
    rng = np.random.default_rng(2)
    return [relaxation(t, tau, rng) for t, tau in ((1.0, 1.0), (0.7, 20.0), (0.5, 1e6))]  # last never relaxes


def test_plot_relaxation_one_curve_per_temperature(records):
    fig = plots.plot_relaxation(records)
    assert isinstance(fig, Figure)
    ax_msd, ax_fs = fig.axes[:2]
    assert len(fig.axes) == 3  # two panels and the temperature colorbar
    assert len(ax_msd.lines) == 3 and len(ax_fs.lines) == 4  # + the 1/e level
    (taus,) = [c for c in ax_fs.collections if isinstance(c, PathCollection)]
    assert len(taus.get_offsets()) == 2  # the record that never relaxes has no τ_α
    assert plt.get_fignums() == []  # closed in pyplot: shown only as a cell's value
    with pytest.raises(ValueError, match="no curve 'msd_b'"):
        plots.plot_relaxation(records, species="b")
    with pytest.raises(ValueError, match="empty"):
        plots.plot_relaxation([])


def test_plot_structure_and_chi4(records):
    fig = plots.plot_structure(records[:2], r_max=2.5, n_bins=50)
    assert len(fig.axes[0].lines) == 2
    fig = plots.plot_structure(records[:2], r_max=2.5, n_bins=50, structure_factor=True, q_max=6.0)
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 2
    fig = plots.plot_chi4(records)
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[0].collections[0].get_offsets()) == 3


def test_angell_plot_with_vft_fit():
    temps = np.array([1.0, 0.8, 0.6, 0.5, 0.45])
    taus = analysis.vft(temps, 0.5, 2.0, 0.3)
    taus[-1] = np.nan
    fig = plots.angell_plot(temps, taus, fit=(0.5, 2.0, 0.3))
    ax = fig.axes[0]
    data, curve = ax.lines
    assert len(data.get_xdata()) == 4 and ax.get_yscale() == "log"
    x, y = curve.get_data()
    assert np.allclose(y, analysis.vft(1 / x, 0.5, 2.0, 0.3))
    assert len(plots.angell_plot(temps, taus).axes[0].lines) == 1
    with pytest.raises(ValueError, match="one length"):
        plots.angell_plot(temps, taus[:2])


def test_parity_plot_reports_pearson():
    rng = np.random.default_rng(3)
    target = rng.random(300)
    prediction = target + 0.3 * rng.random(300)
    mask = rng.random(300) < 0.8
    fig = plots.parity_plot(prediction, target, mask=mask)
    rho = np.corrcoef(prediction[mask], target[mask])[0, 1]
    ax = fig.axes[0]
    assert f"ρ = {rho:.3f}" in ax.get_title() and len(ax.lines) == 1
    assert any(isinstance(c, PathCollection) for c in ax.collections)
    big = plots.parity_plot(np.tile(prediction, 10), np.tile(target, 10))
    assert any(isinstance(c, PolyCollection) for c in big.axes[0].collections)  # hexbin
    with pytest.raises(ValueError, match="one length"):
        plots.parity_plot(prediction[:-1], target)
    with pytest.raises(ValueError, match="finite"):
        plots.parity_plot(np.where(mask, prediction, np.nan), target)


def test_plot_training_curves_from_csv_rows_and_columns(tmp_path):
    epochs = np.arange(15)
    lr = 1e-3 / 2 ** (epochs // 5)  # halved at epochs 5 and 10
    columns = {"epoch": epochs, "train_loss": np.exp(-epochs / 5), "val_loss": np.exp(-epochs / 6),
               "val_rho_0": np.linspace(0.1, 0.5, 15), "val_rho_1": np.linspace(0.3, 0.7, 15), "lr": lr}
    path = tmp_path / "history.csv"
    path.write_text("epoch,train_loss,val_loss,val_rho_0,val_rho_1,lr\n"
                    + "\n".join(",".join(str(columns[k][i]) for k in columns) for i in epochs))
    rows = [{k: columns[k][i] for k in columns} for i in epochs]
    for history in (path, str(path), rows, columns):
        fig = plots.plot_training_curves(history)
        loss, rho = fig.axes
        assert len(loss.lines) == 2 + 2 and len(rho.lines) == 1 + 2  # curves + lr changes
        assert loss.get_yscale() == "log"
        assert np.allclose(rho.lines[0].get_ydata(), np.linspace(0.2, 0.6, 15))
    fig = plots.plot_training_curves({k: columns[k] for k in ("epoch", "train_loss", "val_loss")})
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="'val_loss'"):
        plots.plot_training_curves({"epoch": epochs, "train_loss": epochs})


def test_plot_rho_vs_time_and_matrix():
    times = np.array([0.13, 1.3, 13.0, 130.0])
    rhos = {"SE(3)-GNN": np.array([0.8, 0.7, 0.6, 0.65]), "ridge": np.array([0.6, 0.5, 0.4, 0.45])}
    fig = plots.plot_rho_vs_time(times, rhos, errors={"ridge": np.full(4, 0.02)},
                                 ceiling=np.full(4, 0.9), tau_alpha=50.0)
    ax = fig.axes[0]
    assert len(ax.containers) == 2 and ax.get_xscale() == "log"
    assert len(ax.get_legend().get_texts()) == 4
    with pytest.raises(ValueError, match=r"rhos\['ridge'\] has shape"):
        plots.plot_rho_vs_time(times, {"ridge": np.zeros(3)})
    with pytest.raises(ValueError, match="without correlations"):
        plots.plot_rho_vs_time(times, rhos, errors={"other": np.zeros(4)})

    matrix = np.arange(12, dtype=float).reshape(3, 4) / 12
    matrix[1, 2] = np.nan
    fig = plots.plot_matrix(matrix, ["T=0.44", "T=0.5", "T=0.56"], list("abcd"), "transfer")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 12 and texts[6] == "–" and texts[1] == "0.08"
    assert len(ax.images) == 1 and ax.get_title() == "transfer"
    with pytest.raises(ValueError, match="do not match"):
        plots.plot_matrix(matrix, ["a"], list("abcd"))
