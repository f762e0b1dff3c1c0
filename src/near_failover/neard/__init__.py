"""What one neard is made of: config.json, key files, JSON-RPC and /metrics.

Imports nothing above it; every other part of near-failover builds on it.
"""
