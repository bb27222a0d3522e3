"""3D views of particle configurations and of spherical harmonics (py3Dmol + ipywidgets).

Every view is a :class:`SceneView`: a ``py3Dmol.view`` that also keeps, in ``scene``, what
it draws in numbers (particle indices, drawn positions, colours, edges, mesh), so that tests
and captions can check a picture without a browser.

Rendering:

* A view is static HTML + JavaScript (3Dmol.js from a CDN). It displays in JupyterLab,
  Jupyter Notebook and Colab, and in a built Jupyter Book page, as the cell's ``text/html``
  output; building it needs no browser.
* The viewers (:class:`NeighbourhoodViewer`, :class:`SphericalHarmonicViewer`) are
  ipywidgets boxes: controls plus an ``HTML`` widget holding the current view in an
  ``<iframe>`` (scripts run in an iframe wherever HTML widgets render). Each change of a
  control redraws the view in Python. Without a kernel (a built book) the controls do
  nothing; show a static view next to a viewer so that the page has a picture.

Lengths are in σ_AA; particles are drawn with radius ``scale × σ_αα / 2``.
"""

from __future__ import annotations

import dataclasses
import html
import operator
import uuid

import ipywidgets as widgets
import matplotlib
import numpy as np
import py3Dmol

from glasslab import _arrays, ka
from glasslab.harmonics import e3nn_spherical_harmonics
from glasslab.neighbours import radius_graph

TYPE_COLOURS = ("#3b75af", "#ef8636")
"""Colours of A and B particles when coloured by type."""
NAN_COLOUR = "#b0b0b0"
"""Colour of particles whose value is NaN (e.g. B particles when only A are predicted)."""
EDGE_COLOUR = "#7f7f7f"
SHELL_COLOUR = "#9ecae1"
SIGN_COLOURS = ("#d62728", "#1f77b4")
"""Colours of the positive and negative lobes of a spherical harmonic."""
MAX_TRAJECTORY_POINTS = 500_000
"""Largest frames × particles a trajectory view accepts (about 30 bytes of HTML each)."""


@dataclasses.dataclass
class Scene:
    """What a particle view draws.

    Attributes:
        indices: (M,) particle indices drawn as full spheres (the centre first in a
            neighbourhood view).
        positions: (M, 3) drawn sphere centres (first frame of a trajectory).
        colours: M hex colours.
        radii: (M,) sphere radii.
        edges: number of graph edges drawn as cylinders.
        label: what the colours mean ("type" or the name of the values).
        centre: the centre particle of a neighbourhood view, else None.
        faded: (F,) indices drawn small and transparent (``box_view(highlight=...)``).
        frames: number of animation frames.
    """

    indices: np.ndarray
    positions: np.ndarray
    colours: list[str]
    radii: np.ndarray
    edges: int
    label: str
    centre: int | None = None
    faded: np.ndarray = dataclasses.field(default_factory=lambda: np.empty(0, dtype=np.int64))
    frames: int = 1


@dataclasses.dataclass
class SphericalHarmonicMesh:
    """The surface ``r(n) = |Y_lm(n)| n`` over unit vectors n, as a triangle mesh.

    Attributes:
        l, m: degree and order (e3nn's ordering, see :func:`spherical_harmonic`).
        directions: (V, 3) unit vectors of the vertices.
        values: (V,) signed Y_lm at ``directions``.
        vertices: (V, 3) ``|values| * directions``.
        faces: (F, 3) vertex indices of the triangles.
    """

    l: int
    m: int
    directions: np.ndarray
    values: np.ndarray
    vertices: np.ndarray
    faces: np.ndarray


class SceneView(py3Dmol.view):
    """A ``py3Dmol.view`` that also records, in ``scene``, what it draws.

    Displays like any py3Dmol view (``text/html``); :meth:`html` returns the same markup as a
    string and :meth:`iframe` wraps it in an ``<iframe>`` for an ``ipywidgets.HTML``.
    """

    def __init__(self, width: int = 480, height: int = 400):
        super().__init__(width=width, height=height)
        self.size = (int(width), int(height))
        self.scene = None

    def html(self) -> str:
        """Self-contained HTML + JavaScript of the view (loads 3Dmol.js from a CDN)."""
        self.uniqueid = uuid.uuid4().hex
        return (self.startjs + self.endjs).replace("UNIQUEID", self.uniqueid)

    def iframe(self) -> str:
        """The view as an ``<iframe srcdoc=...>`` element."""
        width, height = self.size
        page = f"<!DOCTYPE html><html><body style='margin:0'>{self.html()}</body></html>"
        return (f'<iframe srcdoc="{html.escape(page, quote=True)}" width="{width + 4}" '
                f'height="{height + 4}" style="border:0"></iframe>')

    def _repr_mimebundle_(self, include=None, exclude=None):
        markup = self.html()
        return {"text/html": markup, "application/3dmoljs_load.v0": markup}

    def _repr_html_(self):
        return self.html()


# --------------------------------------------------------------------------- checks

def _check_particles(positions, types, box):
    pos = _arrays.positions(positions)
    return pos, _arrays.types(types, len(pos), len(ka.TYPE_NAMES)), _arrays.box(box)


def _check_index(index, n: int, name: str) -> int:
    try:
        i = operator.index(index)
    except TypeError:
        raise ValueError(f"{name} must be an integer particle index, got {index!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"{name} {i} is out of range: there are {n} particles (0..{n - 1})")
    return i


# --------------------------------------------------------------------------- colours

def value_range(values, vmin=None, vmax=None) -> tuple[float, float]:
    """(vmin, vmax) for a colour scale: the given limits, else the finite min and max.

    An array without finite values gives (0, 1).
    """
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    default = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo = default[0] if vmin is None else float(vmin)
    hi = default[1] if vmax is None else float(vmax)
    if hi < lo:
        raise ValueError(f"vmax ({hi}) must not be smaller than vmin ({lo})")
    return lo, hi


def values_to_hex(values, cmap="viridis", vmin=None, vmax=None, levels: int | None = None) -> list[str]:
    """Hex colours ``"#rrggbb"`` of ``values`` (N,) under a matplotlib colormap.

    Values are scaled linearly from ``vmin`` to ``vmax`` (default: finite min and max) and
    clipped; a constant array takes the colormap's middle colour; NaN and inf take
    :data:`NAN_COLOUR`. ``levels`` quantises the scale to that many colours.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {v.shape}")
    if levels is not None and levels < 2:
        raise ValueError(f"levels must be at least 2, got {levels}")
    lo, hi = value_range(v, vmin, vmax)
    finite = np.isfinite(v)
    t = np.full(len(v), 0.5)
    if hi > lo:
        t[finite] = np.clip((v[finite] - lo) / (hi - lo), 0.0, 1.0)
    if levels is not None:
        t = np.round(t * (levels - 1)) / (levels - 1)
    rgb = np.round(matplotlib.colormaps[cmap](t)[:, :3] * 255).astype(int)
    colours = np.array(["#%02x%02x%02x" % tuple(c) for c in rgb], dtype=object)
    colours[~finite] = NAN_COLOUR
    return colours.tolist()


def _text_colour(background: str) -> str:
    r, g, b = matplotlib.colors.to_rgb(background)
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"


def _colouring(types, values, cmap, label, vmin, vmax, levels=None):
    """Colours of all particles and the legend entries [(text, colour)] that explain them."""
    if values is None:
        return [TYPE_COLOURS[t] for t in types], [(name, c) for name, c in zip(ka.TYPE_NAMES, TYPE_COLOURS)], "type"
    colours = values_to_hex(values, cmap, vmin, vmax, levels)
    lo, hi = value_range(values, vmin, vmax)
    stops = np.linspace(lo, hi, 5) if hi > lo else np.array([lo])
    entries = [(f"{s:.3g}", values_to_hex([s], cmap, lo, hi)[0]) for s in stops[::-1]]
    if not np.isfinite(values).all():
        entries.append(("no value", NAN_COLOUR))
    return colours, entries, label or "value"


# --------------------------------------------------------------------------- drawing

def _point(x) -> dict:
    return {"x": round(float(x[0]), 4), "y": round(float(x[1]), 4), "z": round(float(x[2]), 4)}


def _add_legend(view, title: str, entries) -> None:
    style = {"useScreen": True, "fontSize": 12, "inFront": True, "backgroundOpacity": 0.85}
    view.addLabel(title, {**style, "position": {"x": 6, "y": 6, "z": 0},
                          "fontColor": "black", "backgroundColor": "white"})
    for k, (text, colour) in enumerate(entries):
        view.addLabel(text, {**style, "position": {"x": 6, "y": 30 + 22 * k, "z": 0},
                             "fontColor": _text_colour(colour), "backgroundColor": colour})


def _add_box_edges(view, box) -> None:
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float) * box
    for a in range(8):
        for b in range(a + 1, 8):
            if np.count_nonzero(corners[a] != corners[b]) == 1:
                view.addCylinder({"start": _point(corners[a]), "end": _point(corners[b]),
                                  "radius": 0.03, "color": EDGE_COLOUR})


BOX_ZOOM = 1.3
"""Zoom after ``zoomTo``: 3Dmol fits the sphere around the box, so a cube seen face-on fills only
64 % of the canvas's width; 1.3 brings it to 86 % (checked in a headless screenshot by
``tests/check_book_render.py``)."""


def _zoom_to_box(view) -> None:
    view.zoomTo()
    view.zoom(BOX_ZOOM)


def particle_radii(types, scale: float = 1.0) -> np.ndarray:
    """Sphere radii ``scale × σ_αα / 2`` (A: 0.5, B: 0.44 at scale 1), shape (N,)."""
    return scale * 0.5 * np.diag(ka.SIGMA)[np.asarray(types)]


def _xyz(frames: np.ndarray, types: np.ndarray) -> str:
    names = np.array(ka.TYPE_NAMES)[types]
    blocks = []
    for frame in frames:
        rows = "\n".join(f"{e} {x:.3f} {y:.3f} {z:.3f}" for e, (x, y, z) in zip(names, frame))
        blocks.append(f"{len(types)}\nglasslab\n{rows}")
    return "\n".join(blocks) + "\n"


def _add_particles(view, frames, types, colours, radii, opacity: float = 1.0) -> None:
    """One 3Dmol model of spheres (animated if ``frames`` (F, M, 3) has F > 1)."""
    data = _xyz(frames, types)
    if len(frames) > 1:
        view.addModelsAsFrames(data, "xyz", {"assignBonds": False})
    else:
        view.addModel(data, "xyz", {"assignBonds": False})
    groups: dict[tuple[str, float], list[int]] = {}
    for k, (colour, radius) in enumerate(zip(colours, np.round(radii, 4))):
        groups.setdefault((colour, float(radius)), []).append(k)
    for (colour, radius), serials in groups.items():
        view.setStyle({"model": -1, "serial": serials},
                      {"sphere": {"color": colour, "radius": radius, "opacity": opacity}})


# --------------------------------------------------------------------------- particle views

def neighbours(positions, box, centre: int, cutoff: float = 2.0, graph=None):
    """Neighbours j of particle ``centre`` with ``|x_j - x_i|`` < ``cutoff`` (minimum image).

    Args:
        positions: (N, 3) positions; box: (3,) periodic box edges or None (open).
        graph: optional ``(edge_index, edge_vec)`` of :func:`glasslab.graph.radius_graph`
            for these positions and cutoff, to avoid recomputing it.

    Returns:
        ``(indices, vectors)``: (M,) neighbour indices and (M, 3) vectors x_j - x_i.
    """
    edge_index, edge_vec = radius_graph(positions, cutoff, box=box) if graph is None else graph
    edge_index, edge_vec = np.asarray(edge_index), np.asarray(edge_vec)
    selected = edge_index[1] == centre
    return edge_index[0, selected], edge_vec[selected]


def neighbourhood_view(positions, types, box, centre: int, cutoff: float = 2.0, values=None,
                       cmap: str = "viridis", label: str | None = None, vmin=None, vmax=None,
                       show_edges: bool = True, show_shell: bool = True, scale: float = 0.6,
                       graph=None, width: int = 480, height: int = 400) -> SceneView:
    """The graph neighbourhood of one particle in 3D.

    The centre particle i sits at its wrapped position and every neighbour j at
    ``x_i + (x_j - x_i)`` under the minimum image, so that the cutoff sphere is never cut by
    the periodic box. Edges j -> i are thin cylinders; the cutoff sphere is translucent.

    Args:
        positions: (N, 3) positions (may be unwrapped); types: (N,) 0 = A, 1 = B.
        box: (3,) periodic box edges, or None for an open cluster.
        centre: index of the centre particle.
        cutoff: graph cutoff (σ_AA), as in :func:`glasslab.graph.radius_graph`.
        values: optional (N,) per-particle values (propensity, a prediction) to colour
            by, with colormap ``cmap`` over [vmin, vmax] (default: range over all N
            particles, so colours compare between centres); NaN is drawn grey.
        label: name of the values in the legend.
        scale: sphere radius as a fraction of σ_αα / 2 (1 = contact size; smaller
            spheres leave the edges visible).
        graph: optional precomputed ``radius_graph(positions, cutoff, box)``.

    Returns:
        A :class:`SceneView` whose ``scene`` lists the centre and its neighbours.
    """
    pos, types, box = _check_particles(positions, types, box)
    centre = _check_index(centre, len(pos), "centre")
    if values is not None:
        values = _arrays.per_particle(values, len(pos), finite=False)
    _arrays.box(box, cutoff)
    idx, vec = neighbours(pos, box, centre, cutoff, graph)
    origin = pos[centre] if box is None else np.mod(pos[centre], box)
    indices = np.concatenate([[centre], idx]).astype(np.int64)
    drawn = np.vstack([origin, origin + vec])
    all_colours, entries, name = _colouring(types, values, cmap, label, vmin, vmax)
    colours = [all_colours[k] for k in indices]
    radii = particle_radii(types[indices], scale)

    view = SceneView(width, height)
    for x, r, c in zip(drawn, radii, colours):
        view.addSphere({"center": _point(x), "radius": round(float(r), 4), "color": c})
    if show_edges:
        for x in drawn[1:]:
            view.addCylinder({"start": _point(x), "end": _point(origin), "radius": 0.04, "color": EDGE_COLOUR})
    if show_shell:
        view.addSphere({"center": _point(origin), "radius": float(cutoff), "color": SHELL_COLOUR, "opacity": 0.12})
    view.addLabel(f"i={centre}", {"position": _point(origin), "fontSize": 11, "inFront": True,
                                  "backgroundOpacity": 0.6, "backgroundColor": "black"})
    title = f"particle {centre} ({ka.TYPE_NAMES[types[centre]]}), {len(idx)} neighbours, r < {cutoff:g}"
    if values is not None:
        title += f"; {name} = {values[centre]:.3g}"
    _add_legend(view, title, entries)
    view.zoomTo()
    view.scene = Scene(indices, drawn, colours, radii, len(idx) if show_edges else 0, name, centre=centre)
    return view


def _highlighted(values, fraction: float, lowest: bool) -> np.ndarray:
    if not 0 < fraction <= 1:
        raise ValueError(f"highlight must be a fraction in (0, 1], got {fraction}")
    finite = np.flatnonzero(np.isfinite(values))
    count = int(np.ceil(fraction * len(finite)))
    order = finite[np.argsort(values[finite], kind="stable")]
    return np.sort(order[:count] if lowest else order[len(order) - count:])


def box_view(positions, types, box, values=None, cmap: str = "coolwarm", label: str | None = None,
             vmin=None, vmax=None, highlight: float | None = None, lowest: bool = False,
             scale: float = 1.0, width: int = 480, height: int = 480) -> SceneView:
    """The whole periodic box: wrapped particles, box edges, coloured by type or ``values``.

    Args:
        positions: (N, 3) positions (wrapped into the box for drawing); types: (N,).
        box: (3,) periodic box edges.
        values: optional (N,) values (e.g. propensity: dynamic heterogeneity) coloured with
            ``cmap`` over [vmin, vmax] (default: their range), quantised to 64 colours.
        highlight: if given, only this fraction of the particles with the largest values
            (smallest with ``lowest=True``) is drawn full size and opaque; the others are
            small and transparent. NaN values are never highlighted.
        scale: sphere radius as a fraction of σ_αα / 2.

    Returns:
        A :class:`SceneView`; ``scene.indices`` are the full-size particles and
        ``scene.faded`` the others.
    """
    pos, types, box = _check_particles(positions, types, box)
    if box is None:
        raise ValueError("box_view needs the periodic box edges, got box=None")
    if values is not None:
        values = _arrays.per_particle(values, len(pos), finite=False)
    if highlight is not None and values is None:
        raise ValueError("highlight needs values to rank the particles by")
    wrapped = np.mod(pos, box)
    colours, entries, name = _colouring(types, values, cmap, label, vmin, vmax, levels=64)
    shown = np.arange(len(pos)) if highlight is None else _highlighted(values, highlight, lowest)
    faded = np.setdiff1d(np.arange(len(pos)), shown)

    view = SceneView(width, height)
    _add_box_edges(view, box)
    for group, opacity, size in ((shown, 1.0, scale), (faded, 0.15, 0.35 * scale)):
        if len(group):
            _add_particles(view, wrapped[group][None], types[group], [colours[k] for k in group],
                           particle_radii(types[group], size), opacity)
    title = f"{len(pos)} particles, colour: {name}"
    if highlight is not None:
        title += f"; {'lowest' if lowest else 'highest'} {highlight:.0%} opaque"
    _add_legend(view, title, entries)
    _zoom_to_box(view)
    view.scene = Scene(shown, wrapped[shown], [colours[k] for k in shown],
                       particle_radii(types[shown], scale), 0, name, faded=faded)
    return view


def trajectory_view(frames, types, box, values=None, cmap: str = "coolwarm", label: str | None = None,
                    vmin=None, vmax=None, scale: float = 1.0, interval: int = 100,
                    width: int = 480, height: int = 480) -> SceneView:
    """An animated short trajectory in the periodic box.

    Frame t is drawn at ``wrap(x(0)) + (x(t) - x(0))``: particles start inside the box and
    move continuously (no jumps across the boundary).

    Args:
        frames: (F, N, 3) unwrapped positions (e.g. ``Relaxation.trajectory``);
            F × N must not exceed :data:`MAX_TRAJECTORY_POINTS`.
        types: (N,); box: (3,) periodic box edges.
        values: optional (N,) values to colour by (e.g. each particle's displacement).
        interval: milliseconds between frames.
    """
    traj = np.asarray(frames, dtype=np.float64)
    if traj.ndim != 3 or traj.shape[2] != 3 or len(traj) < 2:
        raise ValueError(f"frames must have shape (F, N, 3) with F >= 2, got {traj.shape}")
    if traj.shape[0] * traj.shape[1] > MAX_TRAJECTORY_POINTS:
        raise ValueError(f"{traj.shape[0]} frames x {traj.shape[1]} particles exceed {MAX_TRAJECTORY_POINTS} "
                         "points (about 30 bytes of HTML each): pass fewer frames, e.g. frames[::k]")
    pos, types, box = _check_particles(traj[0], types, box)
    if box is None:
        raise ValueError("trajectory_view needs the periodic box edges, got box=None")
    if not np.isfinite(traj).all():
        raise ValueError("frames hold NaN or inf")
    if values is not None:
        values = _arrays.per_particle(values, len(pos), finite=False)
    drawn = np.mod(pos, box) + (traj - pos)
    colours, entries, name = _colouring(types, values, cmap, label, vmin, vmax, levels=64)
    radii = particle_radii(types, scale)

    view = SceneView(width, height)
    _add_box_edges(view, box)
    _add_particles(view, drawn, types, colours, radii)
    _add_legend(view, f"{len(pos)} particles, {len(traj)} frames, colour: {name}", entries)
    _zoom_to_box(view)
    view.animate({"loop": "forward", "interval": int(interval)})
    view.scene = Scene(np.arange(len(pos)), drawn[0], colours, radii, 0, name, frames=len(traj))
    return view


# --------------------------------------------------------------------------- spherical harmonics

def spherical_harmonic(l: int, m: int, directions) -> np.ndarray:
    """e3nn's real spherical harmonic Y_lm at unit vectors ``directions`` (V, 3), shape (V,).

    Component ``l + m`` of ``e3nn.o3.spherical_harmonics(l, x, normalize=True,
    normalization="integral")`` (orthonormal on the sphere), from
    :func:`glasslab.harmonics.e3nn_spherical_harmonics`. e3nn's **y axis is the polar axis**:
    for l = 1 the components (m = -1, 0, 1) are proportional to (x, y, z), so m = 0 is the
    harmonic symmetric about y; the map to the z-polar tables is :mod:`glasslab.harmonics`'.
    """
    l = operator.index(l)
    m = operator.index(m)
    if not 0 <= l <= 12:
        raise ValueError(f"degree l must lie in 0..12 (e3nn's range), got {l}")
    if not -l <= m <= l:
        raise ValueError(f"order m must lie in -l..l = {-l}..{l}, got {m}")
    return e3nn_spherical_harmonics(directions, l)[:, l + m]


def _sphere_grid(resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors and triangles of a latitude-longitude grid about the y axis.

    ``resolution`` polar steps and 2 × ``resolution`` azimuthal steps: V = 2r(r - 1) + 2
    vertices (the two poles, then rings) and F = 4r(r - 1) triangles.
    """
    n_phi = 2 * resolution
    theta = np.linspace(0.0, np.pi, resolution + 1)[1:-1]
    phi = np.arange(n_phi) * (2 * np.pi / n_phi)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    rings = np.stack([np.sin(t) * np.sin(p), np.cos(t), np.sin(t) * np.cos(p)], axis=-1).reshape(-1, 3)
    directions = np.vstack([[0.0, 1.0, 0.0], rings, [0.0, -1.0, 0.0]])
    south = len(directions) - 1
    j = np.arange(n_phi)
    nxt = (j + 1) % n_phi
    faces = [np.stack([np.zeros(n_phi, int), 1 + j, 1 + nxt], axis=1)]
    for r in range(resolution - 2):
        a, b = 1 + r * n_phi + j, 1 + r * n_phi + nxt
        faces += [np.stack([a, a + n_phi, b], axis=1), np.stack([b, a + n_phi, b + n_phi], axis=1)]
    last = 1 + (resolution - 2) * n_phi
    faces.append(np.stack([last + j, np.full(n_phi, south), last + nxt], axis=1))
    return directions, np.vstack(faces)


def spherical_harmonic_mesh(l: int, m: int, resolution: int = 24) -> SphericalHarmonicMesh:
    """Triangle mesh of ``r(n) = |Y_lm(n)| n`` (see :func:`spherical_harmonic` for conventions).

    ``resolution`` (4..128) polar steps from e3nn's polar y axis, twice as many in azimuth.
    """
    if not 4 <= resolution <= 128:
        raise ValueError(f"resolution must lie in 4..128, got {resolution}")
    directions, faces = _sphere_grid(int(resolution))
    values = spherical_harmonic(l, m, directions)
    return SphericalHarmonicMesh(int(l), int(m), directions, values, np.abs(values)[:, None] * directions, faces)


def _add_axes(view, length: float) -> None:
    for axis, (name, colour) in enumerate((("x", "#e41a1c"), ("y (polar)", "#4daf4a"), ("z", "#377eb8"))):
        tip = np.zeros(3)
        tip[axis] = length
        # from -tip: the axes (and so the box zoomTo fits) are symmetric about the origin
        view.addArrow({"start": _point(-tip), "end": _point(tip), "radius": 0.01 * length / 0.5, "mid": 0.93,
                       "color": colour})
        view.addLabel(name, {"position": _point(1.08 * tip), "fontSize": 12, "fontColor": colour,
                             "showBackground": False, "inFront": True})


SH_SCALE = 4.0
"""Spherical-harmonic surfaces are drawn scaled to a largest radius of ``SH_SCALE``: 3Dmol.js
zooms to at least 5 length units, so a unit-size shape would fill a corner of the canvas."""


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals per vertex (area-weighted face normals), turned outwards (away from the origin)."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    face_normals = np.cross(b - a, c - a)
    normals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normals)
    flip = np.einsum("ij,ij->i", normals, vertices) < 0
    normals[flip] *= -1
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    fallback = vertices / np.maximum(np.linalg.norm(vertices, axis=1, keepdims=True), 1e-12)
    return np.where(length > 1e-12, normals / np.maximum(length, 1e-12), fallback)


def _sign_meshes(mesh: SphericalHarmonicMesh, scale: float) -> list[dict]:
    """Two single-colour ``addCustom`` specs: the faces where Y_lm > 0 (red), and < 0 (blue).

    3Dmol.js ignores per-vertex colours of custom shapes (they render black), so each sign is its
    own mesh with one ``color``; a face goes to the sign of the mean of its three vertex values.
    """
    vertices = mesh.vertices * scale
    normals = _vertex_normals(vertices, mesh.faces)
    positive = mesh.values[mesh.faces].mean(axis=1) >= 0
    specs = []
    for keep, colour in ((positive, SIGN_COLOURS[0]), (~positive, SIGN_COLOURS[1])):
        faces = mesh.faces[keep]
        if not len(faces):
            continue
        used, local = np.unique(faces, return_inverse=True)
        specs.append({
            "vertexArr": [_point(v) for v in vertices[used]],
            "normalArr": [_point(n) for n in normals[used]],
            "faceArr": local.reshape(-1).tolist(),
            "color": colour,
        })
    return specs


def spherical_harmonic_view(l: int, m: int, resolution: int = 24, show_axes: bool = True,
                            width: int = 400, height: int = 400) -> SceneView:
    """The real spherical harmonic Y_lm as the surface ``r = |Y_lm|``, coloured by its sign.

    Positive lobes are :data:`SIGN_COLOURS` [0] (red), negative ones [1] (blue), drawn as two
    single-colour meshes; the surface is scaled to a largest radius :data:`SH_SCALE` and the view
    zoomed to it; arrows show e3nn's x, y (polar) and z axes. Conventions:
    :func:`spherical_harmonic`. ``scene`` holds the (unscaled) :class:`SphericalHarmonicMesh`.
    """
    mesh = spherical_harmonic_mesh(l, m, resolution)
    scale = SH_SCALE / max(float(np.abs(mesh.values).max()), 1e-12)
    view = SceneView(width, height)
    for spec in _sign_meshes(mesh, scale):
        view.addCustom(spec)
    if show_axes:
        _add_axes(view, 1.15 * SH_SCALE)
    _add_legend(view, f"Y_lm, l = {mesh.l}, m = {mesh.m} (e3nn, y polar)",
                [("positive", SIGN_COLOURS[0]), ("negative", SIGN_COLOURS[1])])
    view.zoomTo()
    view.scene = mesh
    return view


# --------------------------------------------------------------------------- interactive viewers

class _Viewer(widgets.VBox):
    """Controls above an HTML widget showing the latest :class:`SceneView` (``view``)."""

    def __init__(self, controls):
        self.screen = widgets.HTML()
        self.view = None
        self.redraws = 0
        super().__init__(children=[*controls, self.screen])

    def _draw(self) -> SceneView:
        raise NotImplementedError

    def redraw(self, change=None) -> None:
        """Rebuild the view from the controls' values and show it."""
        self.view = self._draw()
        self.screen.value = self.view.iframe()
        self.redraws += 1


class NeighbourhoodViewer(_Viewer):
    """Browse particle neighbourhoods: choose the particle, the colouring and the edges.

    Args:
        positions: (N, 3); types: (N,); box: (3,) periodic box edges or None.
        arrays: named (N,) per-particle arrays offered as colourings next to "type",
            e.g. ``{"propensity t=1.3e+03": ..., "prediction": ...}``.
        cutoff: graph cutoff; the graph is built once.
        centre, colour_by: initial particle and colouring.
        kwargs: passed to :func:`neighbourhood_view` (cmap, scale, width, height, ...).

    Attributes: ``particle`` (IntSlider), ``particle_text`` (BoundedIntText, linked),
    ``colour_by`` (Dropdown), ``edges`` (Checkbox), ``screen`` (HTML), ``view`` (the
    current :class:`SceneView`), ``redraws`` (count).
    """

    def __init__(self, positions, types, box, arrays: dict | None = None, cutoff: float = 2.0,
                 centre: int = 0, colour_by: str = "type", **kwargs):
        pos, types, box = _check_particles(positions, types, box)
        _arrays.box(box, cutoff)
        n = len(pos)
        arrays = dict(arrays or {})
        if "type" in arrays:
            raise ValueError("'type' is reserved for the colouring by particle type; rename that array")
        self._arrays = {name: _arrays.per_particle(a, n, f"arrays[{name!r}]", finite=False) for name, a in arrays.items()}
        if colour_by not in ("type", *self._arrays):
            raise ValueError(f"colour_by must be 'type' or one of {list(self._arrays)}, got {colour_by!r}")
        self._data = (pos, types, box, float(cutoff))
        self._graph = radius_graph(pos, cutoff, box=box)
        self._kwargs = kwargs
        self.particle = widgets.IntSlider(value=_check_index(centre, n, "centre"), min=0, max=n - 1,
                                          description="particle", continuous_update=False)
        self.particle_text = widgets.BoundedIntText(value=self.particle.value, min=0, max=n - 1,
                                                    layout=widgets.Layout(width="8em"))
        widgets.link((self.particle, "value"), (self.particle_text, "value"))
        self.colour_by = widgets.Dropdown(options=["type", *self._arrays], value=colour_by, description="colour")
        self.edges = widgets.Checkbox(value=True, description="edges")
        super().__init__([widgets.HBox([self.particle, self.particle_text]),
                          widgets.HBox([self.colour_by, self.edges])])
        for control in (self.particle, self.colour_by, self.edges):
            control.observe(self.redraw, names="value")
        self.redraw()

    @classmethod
    def from_snapshot(cls, snapshot, predictions: dict | None = None, **kwargs) -> "NeighbourhoodViewer":
        """A viewer of a :class:`glasslab.io.Snapshot`.

        Colourings: type, the propensity at each timescale ("propensity t=..."), the
        inherent-structure energy if stored, and the named (N,) ``predictions``.
        """
        arrays = {}
        if snapshot.propensity is not None:
            arrays.update({f"propensity t={t:.3g}": snapshot.propensity[:, k] for k, t in enumerate(snapshot.times)})
        if snapshot.epot_is is not None:
            arrays["IS energy"] = snapshot.epot_is
        arrays.update(predictions or {})
        return cls(snapshot.positions, snapshot.types, snapshot.box, arrays=arrays, **kwargs)

    def _draw(self) -> SceneView:
        pos, types, box, cutoff = self._data
        name = self.colour_by.value
        values = None if name == "type" else self._arrays[name]
        return neighbourhood_view(pos, types, box, self.particle.value, cutoff, values=values, label=name,
                                  show_edges=self.edges.value, graph=self._graph, **self._kwargs)


class SphericalHarmonicViewer(_Viewer):
    """Sliders for the degree l (0..``l_max``) and order m (-l..l) of a real spherical harmonic.

    Attributes: ``degree`` and ``order`` (IntSliders), ``screen``, ``view``, ``redraws``.
    """

    def __init__(self, l: int = 2, m: int = 0, l_max: int = 6, resolution: int = 24,
                 width: int = 400, height: int = 400):
        if not 0 <= l <= l_max <= 12:
            raise ValueError(f"need 0 <= l <= l_max <= 12, got l={l}, l_max={l_max}")
        if not -l <= m <= l:
            raise ValueError(f"order m must lie in -l..l = {-l}..{l}, got {m}")
        self._options = (resolution, width, height)
        self.degree = widgets.IntSlider(value=l, min=0, max=l_max, description="l")
        self.order = widgets.IntSlider(value=m, min=-l, max=l, description="m")
        super().__init__([widgets.HBox([self.degree, self.order])])
        self.degree.observe(self._on_degree, names="value")
        self.order.observe(self.redraw, names="value")
        self.redraw()

    def _on_degree(self, change) -> None:
        l, m = change["new"], self.order.value
        with self.order.hold_trait_notifications():
            self.order.min, self.order.max = -l, l
        if self.order.value == m:
            self.redraw()

    def _draw(self) -> SceneView:
        resolution, width, height = self._options
        return spherical_harmonic_view(self.degree.value, self.order.value, resolution, width=width, height=height)
