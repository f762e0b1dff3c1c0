"""near-failover: fenced, verified, journaled failover for NEAR Protocol validators."""

__version__ = "0.1.0"
