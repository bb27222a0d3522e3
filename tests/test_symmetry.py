"""Tests of glasslab.symmetry's cube group and the CubeSymmetry augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import random_liquid
from glasslab.graph import build_graph
from glasslab.symmetry import CubeSymmetry, cube_symmetries


def small_graph(n: int = 60, seed: int = 0):
    positions, types, box = random_liquid(n, seed)
    return build_graph(positions, types, box=box, cutoff=1.5)


def as_keys(mats: torch.Tensor) -> set:
    return {tuple(m.round().to(torch.int64).flatten().tolist()) for m in mats}


@pytest.mark.parametrize("proper, size", [(False, 48), (True, 24)])
def test_group_size_orthogonality_and_closure(proper, size):
    group = cube_symmetries(proper=proper)
    assert group.shape == (size, 3, 3)
    assert len(as_keys(group)) == size  # all distinct
    eye = torch.eye(3, dtype=group.dtype)
    assert torch.allclose(group @ group.transpose(1, 2), eye.expand(size, 3, 3))
    assert torch.equal(group[0], eye)
    dets = torch.linalg.det(group)
    if proper:
        assert torch.allclose(dets, torch.ones(size, dtype=group.dtype))
    else:
        assert (dets > 0).sum() == 24 and (dets < 0).sum() == 24
        assert as_keys(-eye[None]) <= as_keys(group)  # the inversion is an element
    keys = as_keys(group)
    products = group[:, None] @ group[None, :]  # every product g h
    assert as_keys(products.reshape(-1, 3, 3)) == keys
    assert as_keys(group.transpose(1, 2)) == keys  # inverses


def test_rotations_map_the_box_onto_itself():
    """Every element permutes the cube's axes up to sign: it maps lattice vectors to lattice vectors."""
    for m in cube_symmetries():
        assert sorted(m.abs().sum(0).tolist()) == [1.0, 1.0, 1.0]
        assert set(m.flatten().tolist()) <= {-1.0, 0.0, 1.0}


def test_cube_symmetry_transform():
    graph = small_graph()
    transform = CubeSymmetry(seed=3)
    group = cube_symmetries(dtype=graph.edge_vec.dtype)
    seen = set()
    for _ in range(400):
        out = transform(graph)
        # the same edges, same lengths, and the vectors transformed by one element of the group
        assert torch.equal(out.edge_index, graph.edge_index) and torch.equal(out.types, graph.types)
        assert torch.allclose(out.edge_vec.norm(dim=-1), graph.edge_vec.norm(dim=-1))
        solution = torch.linalg.lstsq(graph.edge_vec, out.edge_vec).solution.T  # out = graph @ R^T
        index = int((group - solution).abs().amax(dim=(1, 2)).argmin())
        assert torch.allclose(group[index], solution, atol=1e-5)
        seen.add(index)
    assert seen == set(range(48))  # 400 seeded draws cover all 48 elements (an unseeded miss: p ≈ 48 (47/48)^400 ≈ 0.01)
    assert torch.equal(graph.edge_vec, small_graph().edge_vec)  # the input graph is left alone


def test_cube_symmetry_uniform_and_seeded():
    transform = CubeSymmetry(seed=0)
    group = cube_symmetries()
    draws = [int(torch.randint(48, (1,), generator=transform.generator)) for _ in range(4800)]
    counts = np.bincount(draws, minlength=48)
    chi2 = ((counts - 100) ** 2 / 100).sum()
    assert chi2 < 90  # 47 degrees of freedom: P(chi2 > 90) < 1e-4
    assert len(group) == 48
    graph = small_graph()
    a = [CubeSymmetry(seed=5)(graph).edge_vec for _ in range(1)]
    b = [CubeSymmetry(seed=5)(graph).edge_vec for _ in range(1)]
    assert torch.equal(a[0], b[0])
    proper = CubeSymmetry(seed=1, proper=True)
    for _ in range(20):
        out = proper(graph)
        solution = torch.linalg.lstsq(graph.edge_vec.double(), out.edge_vec.double()).solution
        assert torch.linalg.det(solution) > 0
