"""Pictures of glassy liquids and of the models that learn them.

* :mod:`glasslab.viz.plots`: matplotlib figures (relaxation, structure, Angell plot, χ4,
  parity, training curves, ρ vs timescale, annotated matrices); each returns a Figure.
* :mod:`glasslab.viz.widgets`: py3Dmol 3D views (a particle's neighbourhood, the whole box,
  a trajectory, spherical harmonics) and ipywidgets viewers built on them.
"""

from glasslab.viz.plots import (
    angell_plot,
    parity_plot,
    plot_chi4,
    plot_matrix,
    plot_relaxation,
    plot_rho_vs_time,
    plot_structure,
    plot_training_curves,
)
from glasslab.viz.widgets import (
    NeighbourhoodViewer,
    Scene,
    SceneView,
    SphericalHarmonicMesh,
    SphericalHarmonicViewer,
    box_view,
    neighbourhood_view,
    neighbours,
    particle_radii,
    spherical_harmonic,
    spherical_harmonic_mesh,
    spherical_harmonic_view,
    trajectory_view,
    value_range,
    values_to_hex,
)

__all__ = [
    "NeighbourhoodViewer",
    "Scene",
    "SceneView",
    "SphericalHarmonicMesh",
    "SphericalHarmonicViewer",
    "angell_plot",
    "box_view",
    "neighbourhood_view",
    "neighbours",
    "parity_plot",
    "particle_radii",
    "plot_chi4",
    "plot_matrix",
    "plot_relaxation",
    "plot_rho_vs_time",
    "plot_structure",
    "plot_training_curves",
    "spherical_harmonic",
    "spherical_harmonic_mesh",
    "spherical_harmonic_view",
    "trajectory_view",
    "value_range",
    "values_to_hex",
]
