"""What a neard home's config.json says about where neard reads and listens, read on its host.

The fence, the activation and the controls all need the same two facts: where neard loads the
validator key (``validator_key_file``) and which port its RPC listens on (``rpc.addr``).
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from near_failover.hosts.base import Host, HostFileNotFound, PathLike
from near_failover.neard.config import ConfigError, rpc_port, validator_key_file
from near_failover.neard.config_memo import parse_config_memo


async def home_config(host: Host, home: PathLike) -> dict:
    """config.json as neard reads it; {} when it is missing or unparsable (neard then runs on
    its defaults or not at all, so the defaults are what it would use)."""
    path = PurePosixPath(home) / "config.json"
    try:
        return parse_config_memo(await host.read_text(path), source=str(path))
    except (HostFileNotFound, ConfigError):
        return {}


async def home_validator_key_path(host: Host, home: PathLike) -> PurePosixPath:
    """Where neard in ``home`` loads the validator key (config.json's validator_key_file)."""
    return validator_key_file(await home_config(host, home), PurePosixPath(home))


async def home_rpc_ports(host: Host, home: PathLike, rpc_url: str) -> tuple[int, ...]:
    """The port neard's RPC listens on (config.json's rpc.addr), else the inventory URL's."""
    port = rpc_port(await home_config(host, home))
    if port is None:
        url = urlsplit(rpc_url)
        port = url.port or (443 if url.scheme == "https" else 80)
    return (port,)
