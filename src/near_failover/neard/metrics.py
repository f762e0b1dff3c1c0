"""neard's `GET /metrics` (Prometheus text), parsed into something a check can query.

Pure: no I/O here. `NeardRpc.metrics()` fetches the text and hands it to `parse_metrics`.
The metric names that matter for failover are listed in neard-behaviour §4.7.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["AmbiguousMetric", "Metrics", "MetricsParseError", "Sample", "family_lines", "memtrie_shards", "parse_metrics"]


class MetricsParseError(ValueError):
    """The text is not Prometheus exposition format (e.g. an HTML error page)."""


class AmbiguousMetric(LookupError):
    """`value()` matched more than one sample: the caller must pass more labels."""


@dataclass(frozen=True)
class Metrics:
    """All samples of one scrape, indexed by sample name.

    prometheus_client's parser names a counter family without its `_total` suffix and even
    renames a counter sample that lacks the suffix (`near_build_info` becomes
    `near_build_info_total`), so lookups accept the name with or without `_total`.
    """

    by_sample_name: Mapping[str, tuple[Sample, ...]]
    types: Mapping[str, str] = field(default_factory=dict)  # family name -> gauge/counter/...

    def names(self) -> list[str]:
        """Every sample name present, sorted."""
        return sorted(self.by_sample_name)

    def samples(self, name: str) -> list[Sample]:
        """Samples called `name` (or `name` +/- `_total`); empty if the metric is absent."""
        for candidate in _name_candidates(name):
            found = self.by_sample_name.get(candidate)
            if found:
                return list(found)
        return []

    def value(self, name: str, **labels: object) -> float | None:
        """The value of the one sample of `name` whose labels include `labels`.

        None when no sample matches (neard omits some metrics, e.g. per-validator stats while
        syncing, neard-behaviour §4.7). Several matches raise AmbiguousMetric rather than
        silently picking one.
        """
        wanted = {key: str(val) for key, val in labels.items()}
        matches = [s for s in self.samples(name) if _labels_include(s.labels, wanted)]
        if not matches:
            return None
        if len(matches) > 1:
            label_sets = ", ".join(_render_labels(s.labels) for s in matches[:5])
            raise AmbiguousMetric(
                f"metric {name} has {len(matches)} samples matching {_render_labels(wanted)}: "
                f"{label_sets}; pass more labels or use samples()"
            )
        return float(matches[0].value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.samples(name))


def parse_metrics(text: str, only: Iterable[str] | None = None) -> Metrics:
    """Parse Prometheus text exposition; raises MetricsParseError on anything else. With ``only``,
    just those families are parsed (neard exports thousands of samples; a check polled every few
    seconds wants one family): their lines are picked out first, see `family_lines`."""
    if only is not None:
        picked = family_lines(text, frozenset(only))
        if not picked and text.strip() and "# TYPE " not in text:
            raise MetricsParseError("no metric found in the text")
        text = picked
    by_name: dict[str, list[Sample]] = {}
    types: dict[str, str] = {}
    try:
        for family in text_string_to_metric_families(text):
            types[family.name] = family.type
            for sample in family.samples:
                by_name.setdefault(sample.name, []).append(sample)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        # The parser signals bad input with assorted exception types; all mean "not metrics".
        raise MetricsParseError(f"not Prometheus text format: {exc}") from exc
    if text.strip() and not by_name and not types:
        raise MetricsParseError("no metric found in the text")
    return Metrics(by_sample_name={k: tuple(v) for k, v in by_name.items()}, types=types)


def family_lines(text: str, names: frozenset[str]) -> str:
    """The lines of ``text`` that belong to the families ``names`` (their HELP, TYPE and sample
    lines, sample names exactly the family's, as a gauge's are), still Prometheus text."""
    kept = []
    for line in text.splitlines():
        if line.startswith("#"):
            words = line.split(None, 3)
            name = words[2] if len(words) > 2 and words[1] in ("HELP", "TYPE") else ""
        else:
            name = line.split("{", 1)[0].split(None, 1)[0] if line.strip() else ""
        if name in names:
            kept.append(line)
    return "\n".join(kept) + "\n" if kept else ""


# The memory of each loaded memtrie's arena, labelled by shard_uid: a sample with bytes > 0 is a
# loaded memtrie (core/store/src/trie/mem/arena/metrics.rs; `near_mem_trie_` before the rename).
MEMTRIE_ARENA_METRICS = ("near_memtrie_arena_memory_usage_bytes", "near_mem_trie_arena_memory_usage_bytes")


def memtrie_shards(metrics: Metrics) -> list[str]:
    """The shard uids whose memtries the running neard holds, sorted (empty: none loaded)."""
    return sorted(
        {s.labels.get("shard_uid", "?") for name in MEMTRIE_ARENA_METRICS for s in metrics.samples(name) if s.value > 0}
    )


def _name_candidates(name: str) -> Iterable[str]:
    yield name
    if name.endswith("_total"):
        yield name.removesuffix("_total")
    else:
        yield name + "_total"


def _labels_include(have: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(have.get(key) == val for key, val in wanted.items())


def _render_labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
