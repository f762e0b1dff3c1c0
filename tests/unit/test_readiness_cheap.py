"""A standby's readiness made cheap without being less true (issue 13, part 3): config.json is
parsed once per text, /metrics only for the family a check reads. Real files on this host."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from near_failover.hosts.home import home_config, home_rpc_ports
from near_failover.hosts.local import LocalHost
from near_failover.neard import config as neard_config
from near_failover.neard import config_memo
from near_failover.neard.config import ConfigError
from near_failover.neard.config_memo import parse_config_memo
from near_failover.neard.metrics import (
    MEMTRIE_ARENA_METRICS,
    MetricsParseError,
    family_lines,
    memtrie_shards,
    parse_metrics,
)


def _write(path: Path, port: int) -> None:
    path.write_text(json.dumps({"rpc": {"addr": f"0.0.0.0:{port}"}, "tracked_shards_config": "AllShards"}))


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every text config_memo hands to neard's parser (the real one still parses)."""
    seen: list[str] = []
    real = neard_config.parse_config_text

    def counting(text: str, source: str = "config.json") -> dict:
        seen.append(text)
        return real(text, source)

    monkeypatch.setattr(config_memo, "parse_config_text", counting)
    return seen


def test_the_same_text_is_parsed_once_and_each_caller_gets_its_own_copy(parses: list[str]) -> None:
    text = '{"rpc": {"addr": "0.0.0.0:3030"}, // neard allows comments\n "store": {"load_mem_tries_for_tracked_shards": true}}'
    first = parse_config_memo(text, "a:config.json")
    first["rpc"]["addr"] = "changed by a caller"
    second = parse_config_memo(text, "a:config.json")
    assert second == {"rpc": {"addr": "0.0.0.0:3030"}, "store": {"load_mem_tries_for_tracked_shards": True}}
    assert len(parses) == 1


async def test_an_edit_between_two_reads_is_seen_by_the_next_even_with_the_same_size_mtime_and_inode(tmp_path: Path, parses: list[str]) -> None:
    config = tmp_path / "config.json"
    _write(config, 3030)
    host = LocalHost()
    assert await home_rpc_ports(host, str(tmp_path), "http://127.0.0.1:1") == (3030,)
    before = os.stat(config)
    with open(config, "r+") as f:  # in place: same inode, same size
        f.write(config.read_text().replace("3030", "3031"))
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the mtime put back
    after = os.stat(config)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert await home_rpc_ports(host, str(tmp_path), "http://127.0.0.1:1") == (3031,)
    assert await home_rpc_ports(host, str(tmp_path), "http://127.0.0.1:1") == (3031,)
    assert len(parses) == 2  # one parse per distinct text, not per read


async def test_a_file_replaced_by_rename_with_the_old_mtime_is_seen(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    _write(config, 3030)
    host = LocalHost()
    assert (await home_config(host, str(tmp_path)))["rpc"]["addr"] == "0.0.0.0:3030"
    before = os.stat(config)
    other = tmp_path / "config.json.new"
    _write(other, 3032)
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, config)
    assert (await home_config(host, str(tmp_path)))["rpc"]["addr"] == "0.0.0.0:3032"


async def test_a_config_made_unparsable_is_refused_every_time_and_its_fix_seen(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    _write(config, 3030)
    good = config.read_text()
    assert parse_config_memo(good, "n:config.json")["rpc"]["addr"] == "0.0.0.0:3030"
    bad = good[:-1] + "]"  # same size, not JSON neard accepts
    for _ in range(2):
        with pytest.raises(ConfigError, match="invalid JSON"):
            parse_config_memo(bad, "n:config.json")
    config.write_text(bad)
    assert await home_config(LocalHost(), str(tmp_path)) == {}  # as before: neard's defaults
    config.write_text(good)
    assert (await home_config(LocalHost(), str(tmp_path)))["rpc"]["addr"] == "0.0.0.0:3030"


def test_a_bounded_number_of_texts_is_kept(parses: list[str]) -> None:
    texts = [f'{{"rpc": {{"addr": "0.0.0.0:{3000 + i}"}}}}' for i in range(config_memo.KEPT + 1)]
    for text in texts:
        parse_config_memo(text, "n:config.json")
    assert len(config_memo._parsed) <= config_memo.KEPT
    parse_config_memo(texts[0], "n:config.json")  # the oldest was dropped: parsed again
    assert parses.count(texts[0]) == 2


NEARD_METRICS = (
    "# HELP near_block_height_head Height of the current head of the blockchain\n"
    "# TYPE near_block_height_head gauge\n"
    "near_block_height_head 5\n"
    "# HELP near_memtrie_arena_memory_usage_bytes Memory usage of the memtrie arena\n"
    "# TYPE near_memtrie_arena_memory_usage_bytes gauge\n"
    'near_memtrie_arena_memory_usage_bytes{shard_uid="s2.v3"} 1.2e10\n'
    'near_memtrie_arena_memory_usage_bytes{shard_uid="s0.v3"} 0\n'
    "# TYPE near_memtrie_arena_memory_usage_bytes_other gauge\n"
    'near_memtrie_arena_memory_usage_bytes_other{shard_uid="s9.v3"} 7\n'
    "# TYPE near_mem_trie_arena_memory_usage_bytes gauge\n"
    'near_mem_trie_arena_memory_usage_bytes{shard_uid="s1.v3"} 5\n'
    "# TYPE near_peer_connections_total gauge\n"
    "near_peer_connections_total 3\n"
)


def test_only_the_memtrie_families_are_parsed_and_they_say_what_a_full_parse_says() -> None:
    picked = family_lines(NEARD_METRICS, frozenset(MEMTRIE_ARENA_METRICS))
    assert "near_block_height_head" not in picked and "_other" not in picked and "peer" not in picked
    only = parse_metrics(NEARD_METRICS, MEMTRIE_ARENA_METRICS)
    assert memtrie_shards(only) == memtrie_shards(parse_metrics(NEARD_METRICS)) == ["s1.v3", "s2.v3"]
    assert only.names() == sorted(MEMTRIE_ARENA_METRICS)


def test_a_scrape_without_memtries_gives_none_and_a_page_that_is_not_metrics_is_refused() -> None:
    assert memtrie_shards(parse_metrics("# TYPE near_block_height_head gauge\nnear_block_height_head 5\n", MEMTRIE_ARENA_METRICS)) == []
    with pytest.raises(MetricsParseError):
        parse_metrics("<html><body>502 Bad Gateway</body></html>\n", MEMTRIE_ARENA_METRICS)
    with pytest.raises(MetricsParseError):  # a memtrie line that is not Prometheus text
        parse_metrics("# TYPE near_memtrie_arena_memory_usage_bytes gauge\nnear_memtrie_arena_memory_usage_bytes{shard_uid=} x\n",
                      MEMTRIE_ARENA_METRICS)
