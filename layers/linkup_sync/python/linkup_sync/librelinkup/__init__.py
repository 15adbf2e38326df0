"""LibreLink Up follower API adapter. Nothing outside this package knows LibreLink Up's JSON."""

from .client import LinkUpClient

__all__ = ["LinkUpClient"]
