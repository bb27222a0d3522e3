"""Helpers shared by the model tests: a default-dtype switch and a one-thread fixture."""

from __future__ import annotations

import contextlib

import pytest
import torch


@contextlib.contextmanager
def default_dtype(dtype):
    """Build modules under ``dtype`` (e3nn computes its coefficients at construction), then restore."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on two cores shared with other work, thread contention makes these
    small graphs many times slower, without changing any result checked here."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
