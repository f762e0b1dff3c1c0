"""Shared test fixtures: where the nearcore fixtures live.

The fixtures are not part of the repository: they sit in ../shared beside the clone, on a
developer's machine and in CI alike.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "nearcore"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"nearcore fixtures not found at {FIXTURES}: clone beside ../shared")
    return FIXTURES
