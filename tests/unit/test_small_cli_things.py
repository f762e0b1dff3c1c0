"""Small things an operator meets: help without a `<bool>` for flags, `check` citing only what
anyone can read (nearcore's source, NEAR's guide), and `keys inspect` saying a fix once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import typer.main

from near_failover.cli import app
from near_failover.neard.check import HomeFacts, check_home
from near_failover.neard.config import Role, parse_config_text

FIXTURES = Path(__file__).parent.parent / "fixtures" / "nearcore"


def commands(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, group)]
    for name, sub in getattr(group, "commands", {}).items():
        found += commands(sub, (*path, name))
    return found


def test_no_flag_shows_a_value_in_any_help():
    root = typer.main.get_command(app)
    for path, command in commands(root):
        with click.Context(command, info_name=" ".join(("near-failover", *path))) as ctx:
            text = command.get_help(ctx)
        assert "<bool>" not in text, (path, text)
        for param in command.params:
            if isinstance(param, click.Option) and param.is_flag:
                assert f"{param.opts[-1]} <" not in text, (path, param.opts)


def test_check_cites_no_document_the_project_does_not_ship(tmp_path: Path):
    findings = []
    for fixture in FIXTURES.glob("config.*.json"):
        cfg = parse_config_text(fixture.read_text(), source=str(fixture))
        for role in Role:
            for key_present in (True, False):
                facts = HomeFacts(home=tmp_path, config=cfg, key_path=tmp_path / "validator_key.json", chain_id="mainnet",
                                  key_permission_problems=["validator_key.json is readable by every user"] if key_present else [])
                if not key_present:
                    facts.key_error = "absent"
                findings += check_home(facts, role, "pool.poolv1.near")
    findings += check_home(HomeFacts(home=tmp_path, config_error="not JSON"), Role.VALIDATOR)
    assert len(findings) > 10
    for f in findings:
        for text in (f.what, f.why, f.fix):
            assert "§" not in text and "neard-behaviour" not in text, f


def test_keys_inspect_says_the_fix_once(tmp_path: Path):
    key = tmp_path / "validator_key.json"
    key.write_text((FIXTURES / "key-file.example.core-crypto-test.json").read_text())
    os.chmod(key, 0o644)
    shown = subprocess.run([sys.executable, "-m", "near_failover", "keys", "inspect", str(key)], capture_output=True, text=True, timeout=60, check=False)
    text = " ".join(shown.stdout.split())  # a long warning wraps in the table
    assert text.count("warning") >= 1 and text.count("chmod 600") == text.count("warning"), shown.stdout
    assert json.loads(subprocess.run([sys.executable, "-m", "near_failover", "keys", "inspect", str(key), "--json"],
                                     capture_output=True, text=True, timeout=60, check=False).stdout)["warnings"]
