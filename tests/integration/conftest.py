"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.localnet_harness import Localnet, running


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Localnet]:
    """A fresh localnet (chain, val-a signing, val-b and val-c standbys), stopped afterwards."""
    with running(tmp_path / "net") as net:
        yield net
