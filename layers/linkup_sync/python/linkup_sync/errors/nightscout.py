"""The errors of a Nightscout site: refused, unreachable, too large, or an upload that got only part way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from .base import LinkupSyncError


class NightscoutError(LinkupSyncError):
    reason = "nightscout"


class NightscoutUnauthorized(NightscoutError):
    reason = "nightscout_unauthorized"
    needs_person = True

    def __init__(self, message: str | None = None) -> None:
        # `message` (optional) replaces the default text, e.g. for API v3 or treatments.
        super().__init__(
            message
            or "Nightscout answered 401 Unauthorized. Check NIGHTSCOUT_API_TOKEN in the secret: use your "
            "site's API_SECRET, or an access token from Admin Tools whose role has the permissions "
            "api:entries:create and api:entries:read (no built-in role but admin has both)."
        )


class NightscoutRejected(NightscoutError):
    reason = "nightscout_rejected"
    needs_person = True

    def __init__(self, detail: str, *, what: str = "the readings") -> None:
        super().__init__(f"Nightscout did not accept {what}: {detail}")


class NightscoutUnreachable(NightscoutError):
    reason = "nightscout_unreachable"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"Nightscout could not be reached ({detail}). Nothing is lost: the readings are sent on the next "
            "run that reaches it, as long as they are still in LibreLink Up's 12-hour history."
        )


class NightscoutTooLarge(NightscoutUnreachable):
    """A reply larger than the bridge reads (or one that inflates past it): a passing fault of the site."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        NightscoutError.__init__(
            self,
            f"Nightscout sent too much: {detail}. Nothing was stored and nothing is lost: "
            "the next run tries again. If this keeps happening, the site (or a proxy in front of it) is "
            "misbehaving: ask whoever runs it.",
        )


class NightscoutPartialUpload(NightscoutError):
    """Nightscout acknowledged some readings, then the upload failed.

    `accepted` holds the epoch ms of every acknowledged reading (sorted, distinct) and `cause` the first
    NightscoutError; the message, `reason` and `needs_person` are the cause's. Record `accepted` as
    uploaded and retry only the rest.

    The instance is also an instance of the cause's class (``NightscoutPartialUpload(NightscoutUnreachable(
    ...), ...)`` is a NightscoutUnreachable too), so existing ``except`` clauses keep working: put
    ``except NightscoutPartialUpload`` before them to record what was accepted.
    """

    cause: NightscoutError
    accepted: tuple[int, ...]

    def __new__(cls, cause: NightscoutError, accepted: Iterable[int]) -> NightscoutPartialUpload:
        if cls is NightscoutPartialUpload:
            root = cause.cause if isinstance(cause, NightscoutPartialUpload) else cause
            cls = _partial_class(type(root))
        return super().__new__(cls, cause, accepted)

    def __init__(self, cause: NightscoutError, accepted: Iterable[int]) -> None:
        acked = {int(ms) for ms in accepted}
        if isinstance(cause, NightscoutPartialUpload):  # never nest: merge into one
            acked.update(cause.accepted)
            cause = cause.cause
        LinkupSyncError.__init__(self, cause.message)
        self.__dict__.update({k: v for k, v in vars(cause).items() if not k.startswith("_")})
        self.message = cause.message
        self.cause = cause
        self.accepted = tuple(sorted(acked))
        self.reason = cause.reason
        self.needs_person = cause.needs_person

    def __reduce__(self) -> tuple[Any, ...]:
        return (NightscoutPartialUpload, (self.cause, self.accepted))


_PARTIAL_CLASSES: dict[type[NightscoutError], type[NightscoutPartialUpload]] = {}


def _partial_class(cause_type: type[NightscoutError]) -> type[NightscoutPartialUpload]:
    """NightscoutPartialUpload combined with the cause's class (one class per cause class)."""
    if issubclass(NightscoutPartialUpload, cause_type):  # NightscoutError itself
        return NightscoutPartialUpload
    known = _PARTIAL_CLASSES.get(cause_type)
    if known is None:
        name = f"NightscoutPartialUpload[{cause_type.__name__}]"
        made = type(name, (NightscoutPartialUpload, cause_type), {"__module__": __name__, "__qualname__": name})
        known = _PARTIAL_CLASSES.setdefault(cause_type, cast("type[NightscoutPartialUpload]", made))
    return known
