import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from glasslab import io
from glasslab.dataset import GlassDataset, load_graphs, snapshot_to_graph, split_indices
from glasslab.symmetry import RandomRotation, random_rotation, rotate_graph


def write_file(path, n_snap=5, n=80, seed=0):
    rng = np.random.default_rng(seed)
    box = np.full(3, 4.5)
    snaps = [
        io.Snapshot(rng.uniform(0, 4.5, (n, 3)), (rng.random(n) < 0.2).astype(int), box, 0.64,
                    times=[0.5, 5.0], propensity=rng.random((n, 2)),
                    positions_is=rng.uniform(0, 4.5, (n, 3)), epot_is=-7 * rng.random(n))
        for _ in range(n_snap)
    ]
    return io.write_h5(path, snaps)


def test_load_graphs_caches_and_invalidates(tmp_path):
    path = write_file(tmp_path / "d.h5")
    cache = tmp_path / "cache"
    first = load_graphs(path, cache_dir=cache, progress=False)
    files = list((cache / "graphs").iterdir())
    assert len(files) == 1
    second = load_graphs(path, cache_dir=cache, progress=False)
    for a, b in zip(first, second):
        assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.y, b.y)
        assert torch.equal(a.temperature, b.temperature)
    load_graphs(path, cutoff=1.5, cache_dir=cache, progress=False)  # other settings: new entry
    assert len(list((cache / "graphs").iterdir())) == 2
    write_file(path, seed=1)  # edited file: new entry, never stale graphs
    third = load_graphs(path, cache_dir=cache, progress=False)
    assert not torch.equal(third[0].y, first[0].y)


def test_inherent_positions_and_node_scalars(tmp_path):
    snap = io.read_h5(write_file(tmp_path / "d.h5"))[0]
    g = snapshot_to_graph(snap, positions="inherent", node_scalars=("epot_is",))
    assert torch.allclose(g.node_scalars[:, 0], torch.tensor(snap.epot_is, dtype=torch.float32))
    with pytest.raises(ValueError, match="positions must be one of"):
        snapshot_to_graph(snap, positions="quenched")
    with pytest.raises(ValueError, match="unknown node scalar"):
        snapshot_to_graph(snap, node_scalars=("energy",))


def test_dataset_loader_batches(tmp_path):
    ds = GlassDataset.from_files(write_file(tmp_path / "d.h5"), cache=False, progress=False)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch.num_graphs == 2 and batch.box.shape == (2, 3) and batch.times.shape == (2, 2)
    assert len(ds[[0, 2]]) == 2


def test_split_indices_reproducible_and_disjoint():
    train, val, test = split_indices(800, seed=3)
    assert (len(train), len(val), len(test)) == (400, 320, 80)  # the paper's split
    again = split_indices(800, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    assert not np.array_equal(train, split_indices(800, seed=4)[0])
    allidx = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(allidx), np.arange(800))
    assert [len(p) for p in split_indices(64)] == [33, 25, 6]
    with pytest.raises(ValueError, match="summing to 1"):
        split_indices(10, (0.5, 0.5, 0.5))


def test_rotation_is_orthogonal_and_rotates_edges(tmp_path):
    g = torch.Generator().manual_seed(0)
    rot = random_rotation(g)
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.isclose(torch.linalg.det(rot), torch.tensor(1.0, dtype=torch.float64))
    graph = snapshot_to_graph(io.read_h5(write_file(tmp_path / "d.h5"))[0], dtype=torch.float64)
    rotated = rotate_graph(graph, rot)
    assert torch.allclose(rotated.edge_vec.norm(dim=1), graph.edge_vec.norm(dim=1))
    assert torch.allclose(rotated.edge_vec, graph.edge_vec @ rot.T)
    aug = RandomRotation(seed=1)(graph)
    assert not torch.allclose(aug.edge_vec, graph.edge_vec)
    assert torch.allclose(aug.edge_vec.norm(dim=1), graph.edge_vec.norm(dim=1))
