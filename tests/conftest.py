"""Shared test fixtures: where the nearcore fixtures live (inside the repository, so a clone
anywhere has them)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "nearcore"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
