"""Snapshots of glassy liquids and the files they live in.

* :class:`Snapshot`: one configuration with its labels (propensity at K timescales).
* glasslab HDF5 (``.h5``): many snapshots of one system at one temperature; schema in
  ``data/README.md``; written atomically by :func:`write_h5`, read by :func:`read_h5`.
* :func:`read_bapst`: one pickle of the Bapst et al. (2020) DeepMind dataset.
* :func:`read_glassbench`: one ``.npz`` of GlassBench (Jung et al. 2023).
* :func:`read`: any of the above, recognised from the file's content and name.

Every reader raises ``ValueError`` naming the file (and the snapshot index) and the missing
key, bad shape, NaN/inf value or corrupted data; ``FileNotFoundError`` for a missing file.

What is safe to open: every reader here is safe on untrusted files, none runs code from a
file. HDF5 and ``.npz`` files hold only arrays (``.npz`` is read with ``allow_pickle=False``).
Bapst pickles are read by a restricted unpickler that admits only what that format holds
(numpy arrays, dtypes and scalars, and builtin containers, numbers and strings) and refuses
anything else with :class:`UnsafeFileError` before it runs. Only files named ``.pkl`` or
``.pickle`` are ever unpickled: a pickle under another name is refused, not opened.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import pickle
import platform
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from glasslab import analysis, ka
from glasslab._atomic import atomic_path

class UnsafeFileError(ValueError):
    """A data file asks for something glasslab will not do on reading it (e.g. a pickle that
    would import or call objects outside the Bapst schema, which can run code)."""


PICKLE_SUFFIXES = (".pkl", ".pickle")
"""The only file names that :func:`read` and :func:`read_bapst` unpickle."""

FORMAT_NAME = "glasslab-snapshots"
FORMAT_VERSION = 1

GLASSBENCH_BOX = 15.05658
GLASSBENCH_TIMES = {
    0.44: (0.13, 1.3, 13.0, 130.0, 412.0, 1300.0, 4120.0, 13000.0, 41200.0, 130000.0),
}
"""Propensity timescales of GlassBench, per temperature, as published for T = 0.44."""


POSITIONS = ("thermal", "inherent")
"""Which coordinates of a snapshot a model or a descriptor reads (:meth:`Snapshot.coordinates`)."""
NODE_SCALARS = ("epot_is",)
"""Per-particle snapshot fields a model (``node_scalars``) or the ridge can take as extra inputs."""


@dataclasses.dataclass
class Snapshot:
    """One configuration of N particles and, optionally, its propensity labels.

    Attributes:
        positions: (N, 3) positions (LJ units), may be unwrapped in a periodic box.
        types: (N,) integer types, 0 = A, 1 = B.
        box: (3,) orthorhombic periodic box edges.
        temperature: temperature of the state point (LJ units).
        times: (K,) strictly ascending timescales of the labels, or None.
        propensity: (N, K) mean iso-configurational displacement at each time, or None.
        positions_is: optional (N, 3) inherent-structure (energy-minimised) positions.
        epot_is: optional (N,) per-particle potential energy in the inherent structure.
        propensity_halves: optional (2, N, K) propensities from two disjoint halves of the
            replicas (for the noise ceiling).
        meta: free-form metadata (JSON-like values, or numpy arrays of per-particle data).
    """

    positions: np.ndarray
    types: np.ndarray
    box: np.ndarray
    temperature: float
    times: np.ndarray | None = None
    propensity: np.ndarray | None = None
    positions_is: np.ndarray | None = None
    epot_is: np.ndarray | None = None
    propensity_halves: np.ndarray | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.positions = np.asarray(self.positions, dtype=np.float64)
        self.types = np.asarray(self.types)
        self.box = np.asarray(self.box, dtype=np.float64).reshape(-1)
        self.temperature = float(self.temperature)
        for name in ("times", "propensity", "positions_is", "epot_is", "propensity_halves"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, np.asarray(value, dtype=np.float64))
        self.validate()

    @property
    def num_particles(self) -> int:
        return len(self.positions)

    def coordinates(self, which: str = "thermal") -> np.ndarray:
        """(N, 3): the thermal ``positions``, or ``positions_is`` of the inherent structure (``"inherent"``)."""
        if which not in POSITIONS:
            raise ValueError(f"positions must be one of {POSITIONS}, got {which!r}")
        if which == "inherent" and self.positions_is is None:
            raise ValueError("positions='inherent' but this snapshot has no inherent-structure positions (positions_is)")
        return self.positions_is if which == "inherent" else self.positions

    @property
    def num_times(self) -> int:
        return 0 if self.times is None else len(self.times)

    def validate(self, source: str = "snapshot") -> None:
        """Raise ``ValueError`` (prefixed with ``source``) if the arrays are inconsistent."""
        n = len(self.positions)

        def fail(msg):
            raise ValueError(f"{source}: {msg}")

        if self.positions.ndim != 2 or self.positions.shape[1] != 3 or n == 0:
            fail(f"positions must have shape (N, 3) with N >= 1, got {self.positions.shape}")
        if not np.isfinite(self.positions).all():
            fail(f"positions hold NaN or inf (particle {_first_bad(self.positions)})")
        if self.types.shape != (n,):
            fail(f"types must have shape ({n},), got {self.types.shape}")
        if self.types.dtype.kind not in "iu" or (n and self.types.min() < 0):
            fail(f"types must be non-negative integers, got dtype {self.types.dtype}")
        if self.box.shape != (3,) or not np.isfinite(self.box).all() or not (self.box > 0).all():
            fail(f"box must be three positive edge lengths, got {self.box.tolist()}")
        if not np.isfinite(self.temperature) or self.temperature <= 0:
            fail(f"temperature must be a positive number, got {self.temperature}")
        if (self.times is None) != (self.propensity is None):
            fail("times and propensity must be given together")
        if self.times is not None:
            k = len(self.times)
            if self.times.ndim != 1 or not np.isfinite(self.times).all() or np.any(np.diff(self.times) <= 0):
                fail(f"times must be finite and strictly ascending, got {self.times.tolist()}")
            if k and self.times[0] <= 0:
                fail(f"times must be positive (time lags after t = 0), got {self.times.tolist()}")
            if self.propensity.shape != (n, k):
                fail(f"propensity must have shape (N={n}, K={k}), got {self.propensity.shape}")
            if not np.isfinite(self.propensity).all():
                fail(f"propensity holds NaN or inf (particle {_first_bad(self.propensity)})")
        if self.positions_is is not None and self.positions_is.shape != (n, 3):
            fail(f"positions_is must have shape ({n}, 3), got {self.positions_is.shape}")
        if self.epot_is is not None and self.epot_is.shape != (n,):
            fail(f"epot_is must have shape ({n},), got {self.epot_is.shape}")
        if self.propensity_halves is not None:
            if self.times is None or self.propensity_halves.shape != (2, n, len(self.times)):
                fail(f"propensity_halves must have shape (2, N, K), got {self.propensity_halves.shape}")
        for name in ("positions_is", "epot_is", "propensity_halves"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                fail(f"{name} holds NaN or inf")


def _first_bad(arr: np.ndarray) -> int:
    """Index (along the first axis) of the first row of ``arr`` holding NaN or inf."""
    return int(np.flatnonzero(~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1))[0])


def _snapshot(source: str, **fields) -> Snapshot:
    """A Snapshot whose errors name ``source`` (the file and snapshot index) instead of "snapshot"."""
    try:
        return Snapshot(**fields)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        msg = msg[len("snapshot: "):] if msg.startswith("snapshot: ") else msg
        raise ValueError(f"{source}: {msg}") from None


# --------------------------------------------------------------------------- glasslab HDF5

_OPTIONAL = {
    "positions_is": np.float64,
    "epot_is": np.float64,
    "propensity_halves": np.float32,
}


def _jsonable(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _split_meta(snapshots: list[Snapshot], path: Path):
    """Split metadata into values shared by all snapshots, per-snapshot JSON, and arrays."""
    array_keys = {k for s in snapshots for k, v in s.meta.items() if isinstance(v, np.ndarray)}
    for key in sorted(array_keys):
        shapes = {np.shape(s.meta.get(key)) if isinstance(s.meta.get(key), np.ndarray) else None for s in snapshots}
        if None in shapes or len(shapes) != 1:
            raise ValueError(f"{path}: meta array {key!r} must be present with one shape in every snapshot")
    plain = [{k: v for k, v in s.meta.items() if k not in array_keys} for s in snapshots]
    encoded = [{k: json.dumps(v, default=_jsonable, sort_keys=True) for k, v in m.items()} for m in plain]
    common = {k: v for k, v in plain[0].items() if all(k in e and e[k] == encoded[0][k] for e in encoded)}
    per_snapshot = [{k: v for k, v in m.items() if k not in common} for m in plain]
    return common, per_snapshot, sorted(array_keys)


def write_h5(path, snapshots: list[Snapshot], provenance: dict | None = None) -> Path:
    """Write snapshots of one system and temperature to a glasslab HDF5 file, atomically.

    Args:
        path: destination ``.h5`` file; replaced only once the new file is complete.
        snapshots: snapshots sharing N, temperature and (if labelled) times.
        provenance: how the data was made (command, seed, hardware, wall time, ...),
            stored as the JSON attribute ``provenance`` next to the glasslab version,
            the date and the host.

    Returns:
        The path written.
    """
    path = Path(path)
    snapshots = list(snapshots)
    if not snapshots:
        raise ValueError(f"{path}: no snapshots to write")
    first = snapshots[0]
    for i, s in enumerate(snapshots):
        s.validate(f"{path}: snapshot {i}")
        if s.num_particles != first.num_particles:
            raise ValueError(f"{path}: snapshot {i} has {s.num_particles} particles, snapshot 0 has {first.num_particles}")
        if s.temperature != first.temperature:
            raise ValueError(f"{path}: snapshot {i} is at T={s.temperature}, snapshot 0 at T={first.temperature}")
        if (s.times is None) != (first.times is None) or (
            s.times is not None and not np.array_equal(s.times, first.times)
        ):
            raise ValueError(f"{path}: snapshot {i} has other label times than snapshot 0")
        for name in _OPTIONAL:
            if (getattr(s, name) is None) != (getattr(first, name) is None):
                raise ValueError(f"{path}: {name} is given for some snapshots only (e.g. not for snapshot {i})")
    common, per_snapshot, array_keys = _split_meta(snapshots, path)

    from glasslab import __version__

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["temperature"] = first.temperature
            f.attrs["num_snapshots"] = len(snapshots)
            f.attrs["num_particles"] = first.num_particles
            f.attrs["glasslab_version"] = __version__
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["host"] = f"{platform.node()} ({platform.platform()})"
            f.attrs["provenance"] = json.dumps(provenance or {}, default=_jsonable, sort_keys=True)
            f.attrs["meta"] = json.dumps(common, default=_jsonable, sort_keys=True)
            gz = dict(compression="gzip", compression_opts=4, shuffle=True)
            f.create_dataset("positions", data=np.stack([s.positions for s in snapshots]), **gz)
            f.create_dataset("types", data=np.stack([s.types for s in snapshots]).astype(np.int8), **gz)
            f.create_dataset("box", data=np.stack([s.box for s in snapshots]))
            if first.times is not None:
                f.create_dataset("times", data=first.times)
                f.create_dataset(
                    "propensity", data=np.stack([s.propensity for s in snapshots]).astype(np.float32), **gz
                )
            for name, dtype in _OPTIONAL.items():
                if getattr(first, name) is not None:
                    f.create_dataset(name, data=np.stack([getattr(s, name) for s in snapshots]).astype(dtype), **gz)
            f.create_dataset(
                "snapshot_meta",
                data=[json.dumps(m, default=_jsonable, sort_keys=True) for m in per_snapshot],
                dtype=h5py.string_dtype(),
            )
            for key in array_keys:
                f.create_dataset(f"meta_arrays/{key}", data=np.stack([s.meta[key] for s in snapshots]), **gz)
    return path


def _require(f: h5py.File, key: str, path: Path, shape: tuple) -> np.ndarray:
    if key not in f:
        raise ValueError(f"{path}: missing dataset {key!r}")
    arr = f[key][()]
    if arr.shape != shape:
        raise ValueError(f"{path}: dataset {key!r} has shape {arr.shape}, expected {shape}")
    return arr


def read_h5_info(path) -> dict:
    """The file-level attributes of a glasslab HDF5 file (format, temperature, provenance, meta...).

    Reads the attributes only: :func:`read_h5` (or ``glasslab info``) also checks the data.
    """
    path = Path(path)
    try:
        with _open_h5(path) as f:
            info = dict(f.attrs)
        for key in ("provenance", "meta"):
            info[key] = _json_attr(info.get(key, "{}"), path, key)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: corrupted HDF5 file ({_one_line(exc)}); regenerate or re-download it") from None
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in info.items()}


def _one_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _json_attr(text, path: Path, what: str):
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: attribute {what!r} is not valid JSON ({exc})") from None


def _check_path(path: Path) -> None:
    """FileNotFoundError / ValueError naming ``path`` when it is missing or not a file."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a data file (to read every file in it, give a glob "
                         f"such as '{path}/*.h5')")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")


def _open_h5(path: Path) -> h5py.File:
    _check_path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({_one_line(exc)})") from None
    if f.attrs.get("format") != FORMAT_NAME:
        f.close()
        raise ValueError(f"{path}: not a glasslab snapshot file (attribute 'format' is not {FORMAT_NAME!r})")
    version = int(f.attrs.get("format_version", -1))
    if version < 1 or version > FORMAT_VERSION:
        f.close()
        raise ValueError(f"{path}: format_version {version} is not supported (this glasslab reads 1..{FORMAT_VERSION})")
    return f


def read_h5(path, indices=None) -> list[Snapshot]:
    """Read the snapshots of a glasslab HDF5 file (all, or those at ``indices``).

    Safe on untrusted files (HDF5 holds arrays only). Raises ``ValueError`` naming the file
    (and snapshot index) for a corrupted file, a missing dataset, a bad shape or NaN/inf.
    """
    path = Path(path)
    try:
        return _read_h5(path, indices)
    except OSError as exc:  # h5py reports a corrupted chunk as a bare OSError naming no file
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: corrupted HDF5 data ({_one_line(exc)}); regenerate or re-download the file") from None


def _read_h5(path: Path, indices) -> list[Snapshot]:
    with _open_h5(path) as f:
        if "positions" not in f:
            raise ValueError(f"{path}: missing dataset 'positions'")
        s, n = f["positions"].shape[:2]
        positions = _require(f, "positions", path, (s, n, 3))
        types = _require(f, "types", path, (s, n)).astype(np.int64)
        box = _require(f, "box", path, (s, 3))
        times = propensity = None
        if "times" in f or "propensity" in f:
            if "times" not in f:
                raise ValueError(f"{path}: missing dataset 'times' (needed with 'propensity')")
            k = f["times"].shape[0]
            times = _require(f, "times", path, (k,))
            propensity = _require(f, "propensity", path, (s, n, k))
        optional = {}
        for name in _OPTIONAL:
            if name in f:
                shape = {"positions_is": (s, n, 3), "epot_is": (s, n), "propensity_halves": (s, 2, n, times.shape[0] if times is not None else 0)}[name]
                optional[name] = _require(f, name, path, shape)
        common = _json_attr(f.attrs.get("meta", "{}"), path, "meta")
        per = ([_json_attr(m, path, "snapshot_meta") for m in _require(f, "snapshot_meta", path, (s,)).astype(str)]
               if "snapshot_meta" in f else [{}] * s)
        arrays = {k: f[f"meta_arrays/{k}"][()] for k in f.get("meta_arrays", {})}
        if "temperature" not in f.attrs:
            raise ValueError(f"{path}: missing attribute 'temperature'")
        temperature = float(f.attrs["temperature"])
    chosen = range(s) if indices is None else indices
    out = []
    for i in chosen:
        if not -s <= i < s:
            raise IndexError(f"{path}: snapshot index {i} out of range (file has {s})")
        meta = {**common, **per[i], **{k: v[i] for k, v in arrays.items()}}
        snap = _snapshot(
            f"{path}: snapshot {i}",
            positions=positions[i],
            types=types[i],
            box=box[i],
            temperature=temperature,
            times=times,
            propensity=None if propensity is None else propensity[i],
            meta=meta,
            **{k: v[i] for k, v in optional.items()},
        )
        out.append(snap)
    return out


# --------------------------------------------------------------------------- Bapst et al. 2020

def _latin1_encode(text, encoding="latin1", errors="strict"):
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (latin-1 only)."""
    if str(encoding).lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    import codecs

    return codecs.encode(text, "latin1", errors)


def _pickle_allowlist() -> dict:
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy < 2
        from numpy.core import multiarray, numeric

    allowed = {}
    for module in ("builtins", "__builtin__"):
        for name in ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
                     "bytearray", "bool"):
            allowed[module, name] = getattr(__import__("builtins"), name)
    allowed["__builtin__", "unicode"] = str
    allowed["__builtin__", "long"] = int
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[module, "_reconstruct"] = multiarray._reconstruct
        allowed[module, "scalar"] = multiarray.scalar
    for module in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[module, "_frombuffer"] = numeric._frombuffer
    allowed["numpy", "ndarray"] = np.ndarray
    allowed["numpy", "dtype"] = np.dtype
    allowed["_codecs", "encode"] = _latin1_encode
    return allowed


class _BapstUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the names a Bapst pickle needs (numpy arrays, dtypes,
    scalars; builtin containers, numbers, strings); any other import is refused before it
    happens, so a crafted file cannot run code."""

    def __init__(self, fh, path: Path):
        super().__init__(fh, encoding="latin1")
        self._path = path
        self._allowed = _pickle_allowlist()

    def find_class(self, module, name):
        obj = self._allowed.get((module, name))
        if obj is None:
            raise UnsafeFileError(
                f"{self._path}: refused to unpickle {module}.{name}: a Bapst pickle holds only numpy arrays and "
                "builtin containers, so this file is not one (it may be crafted to run code); nothing was executed"
            )
        return obj

    def persistent_load(self, pid):
        raise UnsafeFileError(f"{self._path}: refused a persistent id in the pickle (not a Bapst file)")


def load_pickle_safely(path):
    """Unpickle ``path`` with the restricted unpickler of :func:`read_bapst` (no code runs).

    Raises :class:`UnsafeFileError` for anything beyond numpy arrays/dtypes/scalars and builtin
    containers, and ``ValueError`` naming the file for a truncated or malformed pickle.
    """
    path = Path(path)
    _check_path(path)
    try:
        with open(path, "rb") as fh:
            return _BapstUnpickler(fh, path).load()
    except UnsafeFileError:
        raise
    except MemoryError:
        raise ValueError(f"{path}: not a readable pickle (it asks for more memory than there is)") from None
    except Exception as exc:  # unpickling raises many types
        raise ValueError(f"{path}: not a readable pickle ({type(exc).__name__}: {_one_line(exc)})") from None


_BAPST_KEYS = ("positions", "types", "box", "time", "time_indices", "is_values", "trajectory_target_positions", "metadata")


def read_bapst(path) -> Snapshot:
    """Read one configuration of the Bapst et al. (2020) glassy-dynamics dataset (a pickle).

    The propensity at each of the 10 target times is the mean over the 30 replicas of
    ``|target - positions|`` (positions are unwrapped). Targets are put in ascending time
    order (the file stores them with the 1/e ISF point last); the matching ISF values and
    the file's metadata are kept in ``meta``.

    Safe on untrusted files: the pickle is read by a restricted unpickler that admits only
    numpy arrays, dtypes and scalars and builtin containers, numbers and strings, and raises
    :class:`UnsafeFileError` for anything else without running it. The file must be named
    ``.pkl`` or ``.pickle``. NaN or inf in positions or targets is refused.
    """
    path = Path(path)
    if path.suffix.lower() not in PICKLE_SUFFIXES and not path.is_dir():
        raise ValueError(f"{path}: glasslab unpickles only files named {' or '.join(PICKLE_SUFFIXES)} "
                         f"(rename the file if it really is a Bapst pickle)")
    raw = load_pickle_safely(path)
    try:
        return _bapst_snapshot(raw, path)
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: malformed Bapst pickle ({_one_line(exc)})") from None
    except (TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: malformed Bapst pickle ({type(exc).__name__}: {_one_line(exc)})") from None


def _bapst_snapshot(raw, path: Path) -> Snapshot:
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a dict of arrays, got {type(raw).__name__}")
    missing = [k for k in _BAPST_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing} of the Bapst schema")
    positions = np.asarray(raw["positions"], dtype=np.float64)
    n = len(positions)
    if positions.shape != (n, 3):
        raise ValueError(f"{path}: 'positions' has shape {positions.shape}, expected (N, 3)")
    time = np.asarray(raw["time"], dtype=np.float64).reshape(-1)
    time_indices = np.asarray(raw["time_indices"]).astype(np.int64).reshape(-1)
    k = len(time_indices)
    if time_indices.min(initial=0) < 0 or time_indices.max(initial=0) >= len(time):
        raise ValueError(f"{path}: 'time_indices' point outside 'time' (length {len(time)})")
    if not np.isfinite(time).all():
        raise ValueError(f"{path}: 'time' holds NaN or inf")
    targets = raw["trajectory_target_positions"]
    if len(targets) != k:
        raise ValueError(f"{path}: 'trajectory_target_positions' has {len(targets)} entries, expected {k} (one per time index)")
    isf = np.asarray(raw["is_values"], dtype=np.float64).reshape(-1)
    if len(isf) != k:
        raise ValueError(f"{path}: 'is_values' has {len(isf)} entries, expected {k}")
    propensity = np.empty((n, k))
    for col, target in enumerate(targets):
        target = np.asarray(target, dtype=np.float64)
        if target.ndim != 3 or target.shape[1:] != (n, 3) or len(target) == 0:
            raise ValueError(f"{path}: trajectory_target_positions[{col}] has shape {target.shape}, expected (R, {n}, 3)")
        if not np.isfinite(target).all():
            raise ValueError(f"{path}: trajectory_target_positions[{col}] holds NaN or inf")
        propensity[:, col] = analysis.propensity(positions, target)
    times = time[time_indices]
    order = np.argsort(times, kind="stable")
    metadata = raw["metadata"]
    if not isinstance(metadata, dict) or "temperature" not in metadata:
        raise ValueError(f"{path}: 'metadata' must be a dict holding 'temperature'")
    meta = {
        "source": "bapst2020",
        "file": path.name,
        "isf_values": isf[order],
        "num_replicas": int(np.asarray(targets[0]).shape[0]),
        **{f"bapst_{key}": _plain(value) for key, value in metadata.items()},
    }
    types = np.asarray(raw["types"]).reshape(-1)
    if types.dtype.kind == "f" and np.isfinite(types).all() and (types == np.round(types)).all():
        types = types.astype(np.int64)
    elif types.dtype.kind in "iu":
        types = types.astype(np.int64)
    return _snapshot(
        str(path),
        positions=positions,
        types=types,
        box=np.asarray(raw["box"], dtype=np.float64).reshape(-1),
        temperature=_number(metadata["temperature"], path, "metadata['temperature']"),
        times=times[order],
        propensity=propensity[:, order],
        meta=meta,
    )


def _number(value, path: Path, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: {what} is not a number ({value!r})") from None


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("latin1")
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- GlassBench

def glassbench_times(temperature: float) -> np.ndarray:
    """GlassBench propensity timescales at ``temperature`` (ascending).

    T = 0.44 is the published table. For the other state points the same construction is
    applied: the three fixed short times 0.13, 1.3, 13 and τ_α(T) × 10^(k/2) for
    k = -3..3, sorted (at T = 0.44 this reproduces the table exactly).
    """
    key = round(float(temperature), 2)
    if key in GLASSBENCH_TIMES:
        return np.array(GLASSBENCH_TIMES[key])
    if key not in ka.GLASSBENCH_TAU_ALPHA:
        raise ValueError(
            f"no GlassBench time table for T={temperature}; known: {sorted(ka.GLASSBENCH_TAU_ALPHA)} (pass times= explicitly)"
        )
    tau = ka.GLASSBENCH_TAU_ALPHA[key]
    return np.sort(np.concatenate([[0.13, 1.3, 13.0], tau * 10.0 ** (np.arange(-3, 4) / 2)]))


def read_glassbench(path, temperature: float, times=None, box: float = GLASSBENCH_BOX) -> Snapshot:
    """Read one GlassBench configuration (``.npz``: types, initial_positions, md_prop, ...).

    ``md_prop`` (timescales x N) becomes ``propensity`` (N x K) at ``times`` (default:
    :func:`glassbench_times`); the inherent-structure positions and, when present, the
    bond-breaking propensity (``meta["bb_propensity"]``, N x K) are kept.

    Safe on untrusted files: the archive is read with ``allow_pickle=False`` (an object array
    in it is refused). NaN or inf in positions or propensities is refused.
    """
    path = Path(path)
    _check_path(path)
    try:
        temperature = float(temperature)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: temperature must be a number, got {temperature!r}") from None
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"{path}: temperature must be positive, got {temperature}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path}: not a readable .npz file ({_one_line(exc)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: not an .npz archive (a single .npy array)")
    try:
        with npz:
            return _glassbench_snapshot(npz, path, temperature, times, box)
    except ValueError as exc:
        if str(exc).startswith(str(path)):
            raise
        raise ValueError(f"{path}: malformed GlassBench file ({_one_line(exc)})") from None
    except (OSError, EOFError, KeyError, TypeError, IndexError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: corrupted .npz archive ({type(exc).__name__}: {_one_line(exc)})") from None


def _glassbench_snapshot(npz, path: Path, temperature: float, times, box) -> Snapshot:
    for key in ("types", "initial_positions", "md_prop"):
        if key not in npz.files:
            raise ValueError(f"{path}: missing key {key!r} of the GlassBench schema (has {sorted(npz.files)})")
    positions = np.asarray(npz["initial_positions"], dtype=np.float64)
    n = len(positions)
    if positions.shape != (n, 3):
        raise ValueError(f"{path}: 'initial_positions' has shape {positions.shape}, expected (N, 3)")
    md_prop = np.asarray(npz["md_prop"], dtype=np.float64)
    times = glassbench_times(temperature) if times is None else np.asarray(times, dtype=np.float64)
    if md_prop.shape != (len(times), n):
        raise ValueError(f"{path}: 'md_prop' has shape {md_prop.shape}, expected (K={len(times)}, N={n})")
    positions_is = None
    if "initial_positions_inherent" in npz.files:
        positions_is = np.asarray(npz["initial_positions_inherent"], dtype=np.float64)
        if positions_is.shape != (n, 3):
            raise ValueError(f"{path}: 'initial_positions_inherent' has shape {positions_is.shape}, expected ({n}, 3)")
    meta = {"source": "glassbench", "file": path.name}
    if "bb_prop" in npz.files:
        bb = np.asarray(npz["bb_prop"], dtype=np.float64)
        if bb.shape != md_prop.shape:
            raise ValueError(f"{path}: 'bb_prop' has shape {bb.shape}, expected {md_prop.shape}")
        if not np.isfinite(bb).all():
            raise ValueError(f"{path}: 'bb_prop' holds NaN or inf")
        meta["bb_propensity"] = bb.T
    types = np.asarray(npz["types"]).reshape(-1)
    if types.dtype.kind == "f" and np.isfinite(types).all() and (types == np.round(types)).all():
        types = types.astype(np.int64)
    return _snapshot(
        str(path),
        positions=positions,
        types=types,
        box=np.full(3, float(box)),
        temperature=temperature,
        times=times,
        propensity=md_prop.T,
        positions_is=positions_is,
        meta=meta,
    )


# --------------------------------------------------------------------------- dispatch

def sniff_format(path) -> str:
    """'glasslab-h5', 'bapst-pickle' or 'glassbench-npz', from the file's first bytes and name.

    HDF5 and zip (npz) files are recognised by their first bytes whatever their name. A file is
    taken as a Bapst pickle only when it is named ``.pkl`` or ``.pickle``: a pickle under any
    other name (say ``data.h5``) is refused with ``ValueError``, never sent to the unpickler.
    """
    path = Path(path)
    _check_path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "glasslab-h5"
    if head.startswith(b"PK\x03\x04"):
        return "glassbench-npz"
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return "bapst-pickle"
    if not head:
        raise ValueError(f"{path}: empty file (an interrupted download or copy?)")
    if head[:1] == b"\x80":
        raise ValueError(f"{path}: this file is a pickle but is named {path.suffix or 'without a suffix'}; glasslab "
                         f"opens pickles only when named {' or '.join(PICKLE_SUFFIXES)} (rename it if it is a Bapst file)")
    raise ValueError(f"{path}: unknown file format (not HDF5, npz, or a pickle named {' or '.join(PICKLE_SUFFIXES)})")


def read(path, temperature: float | None = None) -> list[Snapshot]:
    """Read any supported file into a list of snapshots.

    GlassBench files do not store their temperature: pass ``temperature``. Safe on untrusted
    files (see the module's "What is safe to open").
    """
    kind = sniff_format(path)
    if kind == "glasslab-h5":
        return read_h5(path)
    if kind == "bapst-pickle":
        return [read_bapst(path)]
    if temperature is None:
        raise ValueError(f"{path}: GlassBench files do not store their temperature; call read(path, temperature=...)")
    return [read_glassbench(path, temperature)]


# --------------------------------------------------------------------------- relaxation curves

RELAXATION_FORMAT = "glasslab-relaxation"


@dataclasses.dataclass
class Relaxation:
    """Structure and dynamics of one state point (the phenomenology data).

    Attributes:
        temperature: T*.
        lags: (L,) time lags of the correlation functions.
        tau_alpha: where F_s(q=7.25, t) of the A particles falls to 1/e.
        types: (N,) particle types; box: (3,) box edges.
        snapshots: (S, N, 3) equilibrium configurations (for g(r), S(q)).
        curves: name -> (L,) arrays: ``msd_a``, ``fs_a``, ``overlap_a`` (self overlap Q(t),
            threshold 0.3), ``chi4_a`` and the same for B (files before overlap was recorded
            lack ``overlap_*``).
        meta: JSON-like metadata (equilibration record, wall time, ``tau_overlap`` where
            Q_A(t) = 1/e, ...).
        trajectory: optional (F, N, 3) unwrapped frames every ``trajectory_dt``.
    """

    temperature: float
    lags: np.ndarray
    tau_alpha: float
    types: np.ndarray
    box: np.ndarray
    snapshots: np.ndarray
    curves: dict[str, np.ndarray]
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)
    trajectory: np.ndarray | None = None
    trajectory_dt: float | None = None


def write_relaxation(path, records: list[Relaxation], provenance: dict | None = None) -> Path:
    """Write relaxation records (one per temperature) to one HDF5 file, atomically."""
    path = Path(path)
    from glasslab import __version__

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = RELAXATION_FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["glasslab_version"] = __version__
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["provenance"] = json.dumps(provenance or {}, default=_jsonable, sort_keys=True)
            for rec in records:
                g = f.create_group(f"T{rec.temperature:.3f}")
                g.attrs["temperature"] = rec.temperature
                g.attrs["tau_alpha"] = rec.tau_alpha
                g.attrs["meta"] = json.dumps(rec.meta, default=_jsonable, sort_keys=True)
                g.create_dataset("lags", data=rec.lags)
                g.create_dataset("types", data=np.asarray(rec.types, dtype=np.int8))
                g.create_dataset("box", data=rec.box)
                g.create_dataset("snapshots", data=np.asarray(rec.snapshots, dtype=np.float32),
                                 compression="gzip", shuffle=True)
                for name, arr in rec.curves.items():
                    g.create_dataset(f"curves/{name}", data=arr)
                if rec.trajectory is not None:
                    g.create_dataset("trajectory", data=np.asarray(rec.trajectory, dtype=np.float32),
                                     compression="gzip", shuffle=True)
                    g.attrs["trajectory_dt"] = rec.trajectory_dt
    return path


def read_relaxation(path) -> list[Relaxation]:
    """Read a relaxation file: one :class:`Relaxation` per temperature, hottest first.

    Safe on untrusted files (HDF5 holds arrays only); a corrupted file raises ``ValueError``
    naming it.
    """
    path = Path(path)
    _check_path(path)
    try:
        return _read_relaxation(path)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path}: corrupted or unreadable HDF5 file ({_one_line(exc)})") from None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: malformed relaxation file ({type(exc).__name__}: {_one_line(exc)})") from None


def _read_relaxation(path: Path) -> list[Relaxation]:
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != RELAXATION_FORMAT:
            raise ValueError(f"{path}: not a glasslab relaxation file (attribute 'format' is not {RELAXATION_FORMAT!r})")
        records = []
        for name, g in f.items():
            for key in ("lags", "types", "box", "snapshots", "curves"):
                if key not in g:
                    raise ValueError(f"{path}: group {name!r} lacks {key!r}")
            records.append(Relaxation(
                temperature=float(g.attrs["temperature"]),
                lags=g["lags"][()],
                tau_alpha=float(g.attrs["tau_alpha"]),
                types=g["types"][()].astype(np.int64),
                box=g["box"][()],
                snapshots=g["snapshots"][()].astype(np.float64),
                curves={k: v[()] for k, v in g["curves"].items()},
                meta=_json_attr(g.attrs.get("meta", "{}"), path, f"{name}/meta"),
                trajectory=g["trajectory"][()] if "trajectory" in g else None,
                trajectory_dt=float(g.attrs["trajectory_dt"]) if "trajectory_dt" in g.attrs else None,
            ))
    return sorted(records, key=lambda r: -r.temperature)
