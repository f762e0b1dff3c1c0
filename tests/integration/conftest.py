"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.localnet_harness import Localnet, start_localnet, stop_localnet


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Localnet]:
    """A fresh localnet (chain, val-a signing, val-b and val-c standbys), stopped afterwards."""
    net = start_localnet(tmp_path / "net")
    try:
        yield net
    finally:
        stop_localnet(net)
