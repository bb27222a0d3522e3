"""Matplotlib figures of the course: phenomenology, training and results.

Every function takes data and returns a ``matplotlib.figure.Figure``; none calls
``plt.show()``. New figures are made through pyplot, so that notebooks (JupyterLab, Colab,
the executed book) can display them, and closed at once: a figure shows once, as the
value of a cell, and tests leak no open figures. Functions with an ``ax`` argument draw
into that Axes instead and return its figure.

Times and lengths are in LJ units; curves of ``glasslab.io.Relaxation`` records are
``msd_a``, ``fs_a``, ``chi4_a`` (A particles) and the same with ``_b``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from glasslab import analysis

FS_LEVEL = float(np.exp(-1.0))
"""F_s(q, τ_α) = 1/e defines τ_α."""


def _figure(figsize) -> Figure:
    fig = plt.figure(figsize=figsize, layout="constrained")
    plt.close(fig)
    return fig


def _new_axes(ax=None, figsize=(5.0, 4.0)):
    if ax is not None:
        return ax.figure, ax
    fig = _figure(figsize)
    return fig, fig.add_subplot()


def _temperature_scale(records, cmap: str):
    """Colours of the records' temperatures and the ScalarMappable of their colorbar."""
    if len(records) == 0:
        raise ValueError("records is empty: pass at least one Relaxation")
    temps = np.array([r.temperature for r in records], dtype=float)
    lo, hi = temps.min(), temps.max()
    if hi == lo:
        lo, hi = lo - 0.05, hi + 0.05
    mappable = matplotlib.cm.ScalarMappable(matplotlib.colors.Normalize(lo, hi), matplotlib.colormaps[cmap])
    return [mappable.to_rgba(t) for t in temps], mappable


def _curve(record, name: str) -> np.ndarray:
    if name not in record.curves:
        raise ValueError(f"record at T={record.temperature:g} has no curve {name!r} (has {sorted(record.curves)})")
    curve = np.asarray(record.curves[name], dtype=float)
    if curve.shape != np.shape(record.lags):
        raise ValueError(f"curve {name!r} at T={record.temperature:g} has shape {curve.shape}, "
                         f"lags have {np.shape(record.lags)}")
    return curve


def plot_relaxation(records, species: str = "a", cmap: str = "coolwarm") -> Figure:
    """MSD (log-log) and F_s(q, t) (log t) of one species, one curve per temperature.

    Args:
        records: ``glasslab.io.Relaxation`` records (one per temperature).
        species: "a" or "b" (curves ``msd_<species>``, ``fs_<species>``).

    The F_s panel marks the 1/e level and, with dots, each record's τ_α (NaN τ_α are
    skipped). Returns a Figure with two Axes and a temperature colorbar.
    """
    colours, mappable = _temperature_scale(records, cmap)
    fig = _figure((10.0, 4.0))
    ax_msd, ax_fs = fig.subplots(1, 2)
    for record, colour in zip(records, colours):
        ax_msd.loglog(record.lags, _curve(record, f"msd_{species}"), color=colour)
        ax_fs.semilogx(record.lags, _curve(record, f"fs_{species}"), color=colour)
    ax_fs.axhline(FS_LEVEL, color="grey", linestyle=":", linewidth=1)
    taus = np.array([r.tau_alpha for r in records], dtype=float)
    known = np.isfinite(taus)
    ax_fs.scatter(taus[known], np.full(known.sum(), FS_LEVEL), c=[c for c, k in zip(colours, known) if k],
                  edgecolors="black", zorder=3, label="τ_α")
    name = species.upper()
    ax_msd.set(xlabel="t", ylabel=f"⟨Δr²(t)⟩ ({name})", title="mean squared displacement")
    ax_fs.set(xlabel="t", ylabel=f"F_s(q, t) ({name})", title="self intermediate scattering")
    ax_fs.legend(loc="upper right")
    fig.colorbar(mappable, ax=[ax_msd, ax_fs], label="T")
    return fig


def plot_structure(records, pair=(0, 0), r_max: float = 3.0, n_bins: int = 150, max_snapshots: int = 4,
                   structure_factor: bool = False, q_max: float = 12.0, cmap: str = "coolwarm") -> Figure:
    """g_αβ(r) (and optionally S_αα(q)) per temperature on one Axes each.

    Computed with :func:`glasslab.analysis.radial_distribution` and
    :func:`glasslab.analysis.structure_factor` on the first ``max_snapshots`` of each
    record's ``snapshots``. S(q) is a direct sum over wavevectors, O(N × (q_max L)³):
    keep ``q_max`` small for large boxes.

    Returns a Figure with one Axes (two with ``structure_factor=True``) and a colorbar.
    """
    colours, mappable = _temperature_scale(records, cmap)
    fig = _figure((10.0 if structure_factor else 5.5, 4.0))
    axes = np.atleast_1d(fig.subplots(1, 2 if structure_factor else 1))
    alpha, beta = ("A", "B")[pair[0]], ("A", "B")[pair[1]]
    for record, colour in zip(records, colours):
        frames = np.asarray(record.snapshots)[:max_snapshots]
        r, g = analysis.radial_distribution(frames, record.box, record.types, pair=pair, r_max=r_max, n_bins=n_bins)
        axes[0].plot(r, g, color=colour)
        if structure_factor:
            q, s = analysis.structure_factor(frames, record.box, record.types, species=pair[0], q_max=q_max)
            axes[1].plot(q, s, color=colour)
    axes[0].set(xlabel="r", ylabel=f"g_{alpha}{beta}(r)", title="pair correlation")
    if structure_factor:
        axes[1].set(xlabel="q", ylabel=f"S_{alpha}{alpha}(q)", title="structure factor")
    fig.colorbar(mappable, ax=list(axes), label="T")
    return fig


def angell_plot(temperatures, taus, fit=None, ax=None) -> Figure:
    """log τ_α against 1/T, with an optional Vogel–Fulcher–Tammann curve.

    Args:
        temperatures, taus: (T,) state points and their τ_α; non-finite τ_α are skipped.
        fit: optional VFT parameters ``(tau0, D, T0)`` as returned by
            :func:`glasslab.analysis.fit_vft`, drawn from just above T0 to beyond the data.

    Returns the Figure: one line of data points, plus one VFT line with ``fit``.
    """
    t = np.asarray(temperatures, dtype=float)
    tau = np.asarray(taus, dtype=float)
    if t.ndim != 1 or t.shape != tau.shape:
        raise ValueError(f"temperatures and taus must be 1-D of one length, got {t.shape} and {tau.shape}")
    if (t <= 0).any() or not np.isfinite(t).all():
        raise ValueError("temperatures must be positive and finite")
    keep = np.isfinite(tau) & (tau > 0)
    fig, ax = _new_axes(ax)
    ax.semilogy(1.0 / t[keep], tau[keep], "o", color="black", label="τ_α")
    if fit is not None:
        tau0, d, t0 = (float(p) for p in fit)
        lowest = max(0.9 * t.min(), t0 + 0.05 * (t.min() - t0)) if t0 < t.min() else 0.9 * t.min()
        grid = np.linspace(lowest, 1.1 * t.max(), 200)
        grid = grid[grid > t0]
        ax.semilogy(1.0 / grid, analysis.vft(grid, tau0, d, t0), color="tab:red",
                    label=f"VFT: τ0={tau0:.3g}, D={d:.3g}, T0={t0:.3g}")
    ax.set(xlabel="1 / T", ylabel="τ_α", title="Angell plot")
    ax.legend()
    return fig


def plot_chi4(records, species: str = "a", cmap: str = "coolwarm", ax=None) -> Figure:
    """Dynamic susceptibility χ4(t) (log t), one curve per temperature, peaks marked.

    Returns the Figure: one line per record, a scatter of the peaks, a colorbar.
    """
    colours, mappable = _temperature_scale(records, cmap)
    fig, ax = _new_axes(ax, figsize=(5.5, 4.0))
    peaks = []
    for record, colour in zip(records, colours):
        chi4 = _curve(record, f"chi4_{species}")
        ax.semilogx(record.lags, chi4, color=colour)
        k = int(np.nanargmax(chi4))
        peaks.append((record.lags[k], chi4[k]))
    ax.scatter(*np.array(peaks).T, c=colours, edgecolors="black", zorder=3, label="peak")
    ax.set(xlabel="t", ylabel=f"χ4(t) ({species.upper()})", title="dynamic heterogeneity")
    ax.legend()
    fig.colorbar(mappable, ax=ax, label="T")
    return fig


def parity_plot(prediction, target, mask=None, ax=None, gridsize: int = 40, max_points: int = 2000) -> Figure:
    """Predicted against true propensity, with the Pearson ρ in the title.

    Args:
        prediction, target: (N,) finite values (after ``mask``).
        mask: optional (N,) booleans (e.g. A particles).
        gridsize: hexbin resolution, used when more than ``max_points`` points remain;
            fewer points are drawn as a scatter.

    Returns the Figure, with the y = x diagonal as its one line.
    """
    pred = np.asarray(prediction, dtype=float)
    true = np.asarray(target, dtype=float)
    if pred.ndim != 1 or pred.shape != true.shape:
        raise ValueError(f"prediction and target must be 1-D of one length, got {pred.shape} and {true.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != pred.shape:
            raise ValueError(f"mask must have shape {pred.shape}, got {mask.shape}")
        pred, true = pred[mask], true[mask]
    if len(pred) < 2:
        raise ValueError(f"need at least two points, got {len(pred)}")
    if not (np.isfinite(pred).all() and np.isfinite(true).all()):
        raise ValueError("prediction and target must be finite where plotted (mask out NaN)")
    rho = float(analysis.pearson(pred, true))
    fig, ax = _new_axes(ax, figsize=(4.5, 4.0))
    if len(pred) > max_points:
        cells = ax.hexbin(true, pred, gridsize=gridsize, bins="log", cmap="viridis", mincnt=1)
        fig.colorbar(cells, ax=ax, label="count")
    else:
        ax.scatter(true, pred, s=6, alpha=0.6)
    lo, hi = min(true.min(), pred.min()), max(true.max(), pred.max())
    ax.plot([lo, hi], [lo, hi], color="black", linestyle="--", linewidth=1)
    ax.set(xlabel="true propensity", ylabel="predicted", title=f"ρ = {rho:.3f} (n = {len(pred)})")
    return fig


def _history_columns(history) -> dict[str, np.ndarray]:
    """Columns of a training history given as a CSV path, a dict of columns or a list of rows."""
    if isinstance(history, (str, Path)):
        with open(history, newline="") as fh:
            history = list(csv.DictReader(fh))
        if not history:
            raise ValueError("training history CSV has no rows")
    if isinstance(history, dict):
        columns = dict(history)
    else:
        rows = list(history)
        if not rows:
            raise ValueError("training history has no rows")
        columns = {key: [row.get(key) for row in rows] for key in rows[0]}

    def as_float(values):
        return np.array([np.nan if v in (None, "") else float(v) for v in values], dtype=float)

    columns = {key: as_float(np.ravel(v)) for key, v in columns.items()}
    for key in ("epoch", "train_loss", "val_loss"):
        if key not in columns:
            raise ValueError(f"training history lacks the column {key!r} (has {sorted(columns)})")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"training history columns differ in length: {sorted(lengths)}")
    return columns


def plot_training_curves(history) -> Figure:
    """Loss (log y) and mean validation ρ against epoch.

    Args:
        history: a CSV path, a dict of columns, or a list of row dicts, with columns
            ``epoch``, ``train_loss``, ``val_loss``, any number of ``val_rho_<k>`` (one per
            timescale; their mean is plotted) and optionally ``lr`` (a dotted vertical line
            marks each epoch where it changes, e.g. a halving).

    Returns a Figure with the loss Axes and, if there are ``val_rho_*`` columns, the ρ Axes.
    """
    cols = _history_columns(history)
    rho_keys = sorted((k for k in cols if re.fullmatch(r"val_rho_.+", k)),
                      key=lambda k: (0, int(k[8:])) if k[8:].isdigit() else (1, k))
    epoch = cols["epoch"]
    fig = _figure((10.0 if rho_keys else 5.0, 4.0))
    axes = np.atleast_1d(fig.subplots(1, 2 if rho_keys else 1))
    axes[0].semilogy(epoch, cols["train_loss"], label="train")
    axes[0].semilogy(epoch, cols["val_loss"], label="validation")
    axes[0].set(xlabel="epoch", ylabel="loss", title="loss")
    if rho_keys:
        mean_rho = np.nanmean(np.stack([cols[k] for k in rho_keys]), axis=0)
        axes[1].plot(epoch, mean_rho, color="tab:green", label=f"mean of {len(rho_keys)} timescales")
        axes[1].set(xlabel="epoch", ylabel="validation Pearson ρ", title="validation ρ")
    if "lr" in cols:
        changes = epoch[1:][np.diff(cols["lr"]) != 0]
        for ax in axes:
            for k, e in enumerate(changes):
                ax.axvline(e, color="grey", linestyle=":", linewidth=1, label="lr change" if k == 0 else None)
    for ax in axes:
        ax.legend()
    return fig


def plot_rho_vs_time(times, rhos: dict, errors: dict | None = None, ceiling=None, tau_alpha: float | None = None,
                     ax=None) -> Figure:
    """Pearson ρ against timescale (log t), one curve with error bars per model.

    Args:
        times: (K,) timescales.
        rhos: label -> (K,) correlations.
        errors: optional label -> (K,) symmetric or (2, K) lower/upper error bars.
        ceiling: optional (K,) noise ceiling (best reachable ρ), drawn dashed.
        tau_alpha: optional τ_α, drawn as a vertical line.

    Returns the Figure; its Axes holds one errorbar container per model.
    """
    t = np.asarray(times, dtype=float)
    if t.ndim != 1 or (t <= 0).any():
        raise ValueError(f"times must be a 1-D array of positive timescales, got shape {t.shape}")
    if not rhos:
        raise ValueError("rhos is empty: pass at least one model's correlations")
    errors = errors or {}
    unknown = set(errors) - set(rhos)
    if unknown:
        raise ValueError(f"errors has labels without correlations: {sorted(unknown)}")
    fig, ax = _new_axes(ax, figsize=(6.0, 4.0))
    for label, rho in rhos.items():
        rho = np.asarray(rho, dtype=float)
        if rho.shape != t.shape:
            raise ValueError(f"rhos[{label!r}] has shape {rho.shape}, times have {t.shape}")
        err = None if label not in errors else np.asarray(errors[label], dtype=float)
        if err is not None and err.shape not in (t.shape, (2, len(t))):
            raise ValueError(f"errors[{label!r}] must have shape {t.shape} or (2, {len(t)}), got {err.shape}")
        ax.errorbar(t, rho, yerr=err, marker="o", capsize=3, label=label)
    if ceiling is not None:
        ceiling = np.asarray(ceiling, dtype=float)
        if ceiling.shape != t.shape:
            raise ValueError(f"ceiling has shape {ceiling.shape}, times have {t.shape}")
        ax.plot(t, ceiling, color="black", linestyle="--", label="noise ceiling")
    if tau_alpha is not None:
        ax.axvline(tau_alpha, color="grey", linestyle=":", label="τ_α")
    ax.set_xscale("log")
    ax.set(xlabel="t", ylabel="Pearson ρ", title="prediction quality vs timescale")
    ax.legend()
    return fig


def plot_matrix(matrix, row_labels, col_labels, title: str = "", ax=None, fmt: str = ".2f",
                cmap: str = "viridis", vmin=None, vmax=None, xlabel: str | None = None,
                ylabel: str | None = None) -> Figure:
    """Annotated heatmap of an (R, C) matrix, e.g. ρ of models trained at one temperature
    (rows) and tested at another (columns). NaN cells are blank and annotated "–".

    Returns the Figure: one image, R × C annotations, a colorbar.
    """
    mat = np.asarray(matrix, dtype=float)
    if mat.ndim != 2:
        raise ValueError(f"matrix must be 2-D, got shape {mat.shape}")
    if len(row_labels) != mat.shape[0] or len(col_labels) != mat.shape[1]:
        raise ValueError(f"labels ({len(row_labels)} rows, {len(col_labels)} columns) do not match "
                         f"the matrix shape {mat.shape}")
    fig, ax = _new_axes(ax, figsize=(1.0 + 0.9 * mat.shape[1], 0.8 + 0.7 * mat.shape[0]))
    image = ax.imshow(np.ma.masked_invalid(mat), cmap=cmap, vmin=vmin, vmax=vmax)
    for (i, j), value in np.ndenumerate(mat):
        if np.isfinite(value):
            r, g, b, _ = image.to_rgba(value)
            colour = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            ax.text(j, i, format(value, fmt), ha="center", va="center", color=colour)
        else:
            ax.text(j, i, "–", ha="center", va="center", color="grey")
    ax.set_xticks(range(mat.shape[1]), [str(c) for c in col_labels])
    ax.set_yticks(range(mat.shape[0]), [str(r) for r in row_labels])
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    fig.colorbar(image, ax=ax)
    return fig
