"""Batch-norm statistics and dropout: the evaluation-mode offset and its fix."""

from __future__ import annotations

import pytest
import torch

from conftest import random_liquid
from glasslab.graph import build_graph
from glasslab.models import SE3GNN, has_active_dropout, recalibrate_batch_norm


def liquid_graph(n: int = 120, seed: int = 0):
    positions, types, box = random_liquid(n, seed)
    return build_graph(positions, types, box=box, cutoff=2.0)


def batch_statistics_output(model, graph):
    """Outputs with every batch norm using the graph's own statistics and dropout off."""
    model.eval()
    norms = [m for m in model.modules() if "BatchNorm" in type(m).__name__]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for m in norms:
        m.train()
    with torch.no_grad():
        out = model(graph)
    model.load_state_dict(state)
    model.eval()
    return out


@pytest.fixture(scope="module")
def dropout_model():
    torch.manual_seed(0)
    model = SE3GNN(lmax=1, n_layers=3, dropout=0.5, out_dim=2)
    graphs = [liquid_graph(seed=s) for s in range(3)]
    model.train()
    with torch.no_grad():
        for _ in range(4):
            for g in graphs:
                model(g)  # running statistics gathered with dropout on, as in training
    return model, graphs


def test_dropout_statistics_shift_evaluation_outputs(dropout_model):
    """The failure the recalibration fixes: statistics from the dropout-on network, used with
    dropout off, shift the outputs (control for the test below)."""
    model, graphs = dropout_model
    model.eval()
    with torch.no_grad():
        stored = model(graphs[0])
    reference = batch_statistics_output(model, graphs[0])
    assert (stored - reference).abs().mean() > 0.05 * reference.std()


def test_recalibrated_statistics_match_the_dropout_off_network(dropout_model):
    model, graphs = dropout_model
    assert has_active_dropout(model) and not has_active_dropout(SE3GNN(lmax=0, n_layers=1, dropout=0.0))
    recalibrate_batch_norm(model, graphs[:1])
    assert not model.training
    with torch.no_grad():
        recalibrated = model(graphs[0])
    reference = batch_statistics_output(model, graphs[0])
    # equal up to the unbiased/biased variance of the running statistics (n/(n-1), n ~ 10^3 - 10^4)
    assert (recalibrated - reference).abs().max() < 1e-2 * reference.std()
    assert all(m.momentum in (0.1, 0.5) for m in model.modules() if "BatchNorm" in type(m).__name__)
