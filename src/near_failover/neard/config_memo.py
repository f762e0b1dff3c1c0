"""config.json parsed once per distinct text, for the checks that read it every few seconds.

A standby's readiness (a quarter ttl apart) and the node handles (the key's path, the RPC port)
read config.json again each time, and parsing it as neard does (comments stripped in pure Python)
cost more than the rest of those checks together. The file is still read each time; only its
parse is kept, keyed by the text itself, so an edit is seen by the very next read (whatever its
mtime, size or inode) and an unchanged text gives the answer a fresh parse would. Callers get a
copy they may change. Unparsable text is not kept: it raises each time, as a fresh parse does.
No hashlib: the watchdog imports this through hosts.home, and OpenSSL would cost it a megabyte.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

from near_failover.neard.config import CONFIG_FILENAME, parse_config_text

KEPT = 16  # distinct (text, source) parses kept: a node's own home and those of its host's others

_parsed: OrderedDict[tuple[str, str], dict] = OrderedDict()


def parse_config_memo(text: str, source: str = CONFIG_FILENAME) -> dict:
    """`parse_config_text(text, source)`, parsed only when this text was not parsed lately."""
    key = (text, source)
    cfg = _parsed.get(key)
    if cfg is None:
        cfg = parse_config_text(text, source)
        _parsed[key] = cfg
        while len(_parsed) > KEPT:
            _parsed.popitem(last=False)
    else:
        _parsed.move_to_end(key)
    return copy.deepcopy(cfg)
