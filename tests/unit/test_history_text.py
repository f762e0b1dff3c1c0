"""`history`'s text: reasons, durations, missed duties and who started each run; never a Python
or JSON literal."""

from __future__ import annotations

import re
from pathlib import Path

from near_failover.cli.render import print_history
from near_failover.procedures.journal import Journal


def test_history_text_says_why_how_long_what_it_cost_and_who(tmp_path: Path, capsys) -> None:
    with Journal(tmp_path / "j.sqlite") as journal:
        print_history(journal.history("pool.near"))
        assert capsys.readouterr().out == "no runs yet\n"
        ok = journal.start_run("pool.near", "switchover", "hot-swap", "val-a", "val-b")
        with journal.step(ok, "fence") as step:
            step.add(proof="stopped", pid=None, masked=True)
        journal.finish_run(ok, "ok", {"message": "", "seconds": {"fence": 1.5}, "missed": {"blocks": 1, "chunks": 0, "endorsements": 3}, "recovery": {}})
        refused = journal.start_run("pool.near", "failover", "rpc", "val-b", "val-c")
        with journal.step(refused, "preflight") as step:
            step.add(target_synced=False)
        journal.finish_run(refused, "refused", {"message": "target val-c is syncing", "recovery": {}})
        journal.record_event("pool.near", "self-fence", "val-b", {"reason": "neard's process is gone", "generation": None})
        print_history(journal.history("pool.near"))
    text = capsys.readouterr().out
    assert not re.search(r"\b(None|null|True|False)\b", text), text
    fence, refused_text, ok_text = text.split("run ")[1:]
    assert "self-fence on val-b: ok" in fence and "reason: neard's process is gone" in fence
    assert "refused in " in refused_text and "reason: target val-c is syncing" in refused_text
    assert "switchover (hot-swap) val-a -> val-b: ok in " in ok_text and "missed duties: blocks 1, chunks 0, endorsements 3" in ok_text
    assert "fence: ok in " in ok_text and "(fence proven: stopped)" in ok_text and "started by " in ok_text
