"""Local stand-ins for the remote services (development tooling, never shipped to Lambda)."""
