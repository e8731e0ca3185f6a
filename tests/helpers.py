"""Test helpers shared by test modules (import as `from helpers import ...`)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn


class TinyCNN(nn.Module):
    """A LeNet-like network that traces with torch.fx (conv/pool/fc names as in DQL examples)."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.pool2 = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(8 * 2 * 2, 16)
        self.fc2 = nn.Linear(16, n_classes)

    def forward(self, x):
        x = self.pool1(torch.relu(self.conv1(x)))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))


def tiny_cnn(seed: int = 0, n_classes: int = 10) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(n_classes)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bit pattern of a tensor, for bit-exact comparisons (never float equality)."""
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().reshape(-1).view(view)


def assert_bit_exact(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(bits(a[k]), bits(b[k])), k


def direct_writes_supported(folder: Path) -> bool:
    """Whether this file system opens files O_DIRECT (tmpfs does not): direct-write tests skip where not."""
    from modelhub.storage import directio

    probe = folder / "probe"
    probe.write_bytes(b"")
    fd = directio.open_direct(probe)
    probe.unlink()
    if fd < 0:
        return False
    os.close(fd)
    return True
