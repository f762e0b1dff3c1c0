"""An emulated NEAR localnet: a chain process and neard-like node processes.

The rest of near-failover reaches it only over a real node's interfaces (files, signals,
HTTP), never by import.
"""
