"""The errors of the state store (the stack's DynamoDB table, or the command line's file)."""

from __future__ import annotations

from .base import LinkupSyncError


class StateUnavailable(LinkupSyncError):
    """DynamoDB refused or did not answer (throttling beyond botocore's own retries, an outage, access)."""

    reason = "state_unavailable"

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(
            f"The bridge's state table (DynamoDB) could not be read or written ({detail}). Nothing is lost: "
            "the next run starts again from what the table holds."
        )


class StateConflict(LinkupSyncError):
    reason = "state_conflict"

    def __init__(self) -> None:
        super().__init__(
            "Another run changed the stored state at the same moment. Nothing is lost; the next run continues."
        )
