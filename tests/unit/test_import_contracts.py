"""Each import contract of pyproject.toml can fail: a copy of the source tree, given one deliberate
bad import per contract, is run through lint-imports, and each contract names its bad import.

A contract that a typo made vacuous (a layer name that matches nothing, a forbidden module that
does not exist) would pass on any tree; this test would then fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONTRACTS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]

# contract id -> (module added or extended in the copy, the import it makes)
BAD_IMPORTS = {
    "layers": ("hosts/bad_layer.py", "near_failover.procedures.errors"),  # hosts is below procedures
    "api-client": ("api/client.py", "near_failover.api.app"),  # the client is a leaf of the API
    "no-loops": ("localnet/loop_a.py", "near_failover.localnet.loop_b"),  # and loop_b imports loop_a
    "localnet-apart": ("localnet/bad_decision.py", "near_failover.procedures.plan"),
    "neard-below": ("neard/bad_up.py", "near_failover.console"),
}


def _copy_tree(root: Path) -> Path:
    shutil.copytree(REPO / "src" / "near_failover", root / "src" / "near_failover",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


def _lint(root: Path) -> str:
    """lint-imports' report on the tree at ``root``, all contracts at once."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(root / "pyproject.toml")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr  # 1: a contract broken
    return result.stdout


def _verdicts_and_details(report: str) -> tuple[dict[str, str], dict[str, str]]:
    """Per contract id: KEPT or BROKEN, and the details of a broken one."""
    names = {c["name"]: c["id"] for c in CONTRACTS}
    verdicts = {}
    for line in report.splitlines():
        for name, cid in names.items():
            if line.startswith(name) and ("KEPT" in line or "BROKEN" in line):
                verdicts[cid] = "KEPT" if "KEPT" in line else "BROKEN"
    details: dict[str, str] = {}
    _, _, broken = report.partition("Broken contracts")
    lines = broken.splitlines()
    current = None
    for i, line in enumerate(lines):
        underline = i + 1 < len(lines) and lines[i + 1].startswith("---")
        if underline and line.strip() in names:
            current = names[line.strip()]
            details[current] = ""
        elif current:
            details[current] += line + "\n"
    return verdicts, details


@pytest.fixture(scope="module")
def clean_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str]]:
    return _verdicts_and_details(_lint(_copy_tree(tmp_path_factory.mktemp("clean"))))


@pytest.fixture(scope="module")
def bad_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], dict[str, str]]:
    root = _copy_tree(tmp_path_factory.mktemp("bad"))
    package = root / "src" / "near_failover"
    for module, target in BAD_IMPORTS.values():
        path = package / module
        text = path.read_text() if path.exists() else '"""A deliberate bad import."""\n'
        path.write_text(text + f"\nimport {target}  # noqa: E402,F401\n")
    (package / "localnet" / "loop_b.py").write_text("import near_failover.localnet.loop_a  # noqa: F401\n")
    return _verdicts_and_details(_lint(root))


def test_every_contract_is_exercised() -> None:
    assert sorted(BAD_IMPORTS) == sorted(c["id"] for c in CONTRACTS)


@pytest.mark.parametrize("contract", sorted(BAD_IMPORTS))
def test_contract_fails_on_its_bad_import(contract: str, clean_report: tuple[dict[str, str], dict[str, str]],
                                          bad_report: tuple[dict[str, str], dict[str, str]]) -> None:
    module, target = BAD_IMPORTS[contract]
    importer = "near_failover." + module.removesuffix(".py").replace("/", ".")
    verdicts, details = bad_report
    assert verdicts[contract] == "BROKEN", details
    # The report names the bad import: "importer -> imported" for layers and forbidden
    # contracts, the sibling modules of the loop ("loop_a -> .loop_b") for acyclic_siblings.
    if contract == "no-loops":
        assert ".loop_a" in details[contract] or ".loop_b" in details[contract], details[contract]
    else:
        assert f"{importer} -> {target}" in details[contract], details[contract]
    clean_verdicts, clean_details = clean_report
    assert "loop_" not in clean_details.get(contract, "") and importer not in clean_details.get(contract, "")


@pytest.mark.parametrize("contract", ["layers", "api-client", "no-loops", "localnet-apart", "neard-below"])
def test_contract_holds_on_the_real_tree(contract: str, clean_report: tuple[dict[str, str], dict[str, str]]) -> None:
    verdicts, details = clean_report
    assert verdicts[contract] == "KEPT", details.get(contract)
