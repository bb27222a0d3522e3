import numpy as np
import pytest
import torch

from glasslab.graph import build_graph, radius_graph


def brute_force(pos, cutoff, box=None, self_loops=False):
    """O(N²) minimum-image neighbour search, the reference for radius_graph."""
    d = pos[None, :, :] - pos[:, None, :]  # d[i, j] = x_j - x_i
    if box is not None:
        d = d - box * np.round(d / box)
    dist = np.linalg.norm(d, axis=-1)
    close = dist < cutoff
    if not self_loops:
        np.fill_diagonal(close, False)
    else:
        np.fill_diagonal(close, True)
    centre, neighbour = np.nonzero(close)
    return {(int(j), int(i)): d[i, j] for i, j in zip(centre, neighbour)}  # (source j, target i) -> x_j - x_i


def as_dict(edge_index, edge_vec):
    return {(int(s), int(t)): v for (s, t), v in zip(edge_index.T, edge_vec)}


@pytest.mark.parametrize("seed", range(4))
def test_periodic_matches_brute_force_unwrapped_noncubic(seed):
    rng = np.random.default_rng(seed)
    box = np.array([6.1, 7.3, 8.9])
    n = 300
    pos = rng.uniform(0, 1, (n, 3)) * box
    pos += box * rng.integers(-3, 4, (n, 3))  # unwrapped: particles several boxes away
    cutoff = 2.0 + 0.5 * rng.random()
    ei, ev = radius_graph(pos, cutoff, box=box)
    ref = brute_force(pos, cutoff, box)
    got = as_dict(ei, ev)
    assert got.keys() == ref.keys()
    assert np.allclose(np.array([got[k] for k in ref]), np.array([ref[k] for k in ref]), atol=1e-9)


def test_open_cluster_matches_brute_force_and_self_loops():
    rng = np.random.default_rng(7)
    pos = rng.normal(size=(200, 3)) * 2
    for loops in (False, True):
        ei, ev = radius_graph(pos, 1.5, self_loops=loops)
        ref = brute_force(pos, 1.5, self_loops=loops)
        got = as_dict(ei, ev)
        assert got.keys() == ref.keys()
        assert np.allclose(np.array([got[k] for k in ref]), np.array([ref[k] for k in ref]))


def test_edge_convention_and_order():
    pos = np.array([[0.0, 0, 0], [1.0, 0, 0], [5.0, 0, 0]])
    ei, ev = radius_graph(pos, 1.5)
    assert ei.tolist() == [[1, 0], [0, 1]]  # sorted by centre: (j=1 -> i=0), (j=0 -> i=1)
    assert np.allclose(ev, [[1, 0, 0], [-1, 0, 0]])  # x_j - x_i


def test_minimum_image_across_the_boundary():
    box = np.array([10.0, 10.0, 10.0])
    pos = np.array([[0.2, 5, 5], [9.9, 5, 5]])
    ei, ev = radius_graph(pos, 1.0, box=box)
    assert ei.shape == (2, 2)
    assert np.allclose(ev[ei[1] == 0][0], [-0.3, 0, 0])


def test_torch_in_torch_out():
    rng = np.random.default_rng(1)
    pos = torch.tensor(rng.uniform(0, 8, (100, 3)), dtype=torch.float64)
    ei, ev = radius_graph(pos, 2.0, box=torch.tensor([8.0, 8.0, 8.0]))
    assert isinstance(ei, torch.Tensor) and ei.dtype == torch.int64
    assert ev.dtype == torch.float64
    ei2, ev2 = radius_graph(pos.numpy(), 2.0, box=[8, 8, 8])
    assert np.array_equal(ei.numpy(), ei2) and np.allclose(ev.numpy(), ev2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(pos=np.zeros((4, 2)), cutoff=1.0), "shape"),
        (dict(pos=np.array([[0, 0, np.nan], [1, 1, 1]]), cutoff=1.0), "NaN"),
        (dict(pos=np.array([[0, 0, np.inf], [1, 1, 1]]), cutoff=1.0), "NaN or inf"),
        (dict(pos=np.zeros((4, 3)), cutoff=2.0, box=[3.9, 10, 10]), "half the shortest box"),
        (dict(pos=np.zeros((4, 3)), cutoff=1.0, box=[1, -1, 1]), "positive"),
        (dict(pos=np.zeros((4, 3)), cutoff=-1.0), "positive"),
    ],
)
def test_radius_graph_refuses_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        radius_graph(**kwargs)


def test_build_graph_fields(liquid):
    wrapped, types, box = liquid
    n, pos = len(types), wrapped + box  # unwrapped by one box
    y = np.random.default_rng(2).random((n, 3))
    data = build_graph(pos, types, box=box, cutoff=2.0, propensity=y, times=[0.1, 1.0, 10.0])
    assert data.x.shape == (n, 2) and torch.equal(data.x.argmax(1), torch.from_numpy(types))
    assert torch.equal(data.mask_a, torch.from_numpy(types == 0))
    assert data.y.shape == (n, 3) and data.times.shape == (1, 3) and data.box.shape == (1, 3)
    assert (data.pos >= 0).all() and (data.pos < torch.tensor(box, dtype=torch.float32)).all()
    ei, ev = radius_graph(pos, 2.0, box=box)
    assert np.array_equal(data.edge_index.numpy(), ei)
    assert np.allclose(data.edge_vec.numpy(), ev, atol=1e-6)
    assert build_graph(pos, types, box=box, dtype=torch.float64).edge_vec.dtype == torch.float64


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(types=np.array([0, 1, 2, 0])), "types must lie in 0..1"),
        (dict(types=np.array([0, -1, 0, 0])), "types must lie in 0..1"),
        (dict(types=np.array([0.0, 0.5, 0, 0])), "integers"),
        (dict(types=np.array([0, 1, 0])), "shape"),
        (dict(propensity=np.zeros((3, 2))), "propensity must have shape"),
        (dict(propensity=np.zeros((4, 2)), times=[1.0, 2.0, 3.0]), "times has 3 entries"),
        (dict(propensity=np.zeros((4, 2)), times=[2.0, 1.0]), "ascending"),
        (dict(box=[3.0, 3.0, 3.0]), "half the shortest box"),
    ],
)
def test_build_graph_refuses_bad_input(kwargs, message):
    args = dict(positions=np.random.default_rng(0).uniform(0, 4, (4, 3)), types=np.array([0, 1, 0, 0]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        build_graph(**args)
