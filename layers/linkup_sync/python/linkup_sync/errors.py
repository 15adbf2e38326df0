"""Typed errors, one per failure mode.

Every message is written for the person who set the bridge up, not for a programmer: it names the
cause and the fix. No message may contain a password, a token, an Account-Id or any hash of them.
`reason` is a short stable key used in metrics, logs and the state's circuit breakers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

if TYPE_CHECKING:
    from .report import RunReport


class LinkupSyncError(Exception):
    """Base class of every error this package raises on purpose."""

    reason = "error"
    #: True when only the person can fix it (credentials, terms, version): alarm at once.
    needs_person = False
    #: What the failed run got to (runtime.run_once sets it): the failure metrics and doctor read it.
    report: RunReport | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- configuration ------------------------------------------------------------------------------


class ConfigError(LinkupSyncError):
    """The settings or the secret are wrong. Lists every problem at once."""

    reason = "config"
    needs_person = True

    def __init__(self, problems: list[str], *, heading: str = "linkup-sync is not configured correctly") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{heading}:\n{lines}")


class SecretError(ConfigError):
    """The Secrets Manager secret is missing, empty or lacks keys."""

    reason = "secret"


# --- LibreLink Up --------------------------------------------------------------------------------


class LinkUpError(LinkupSyncError):
    reason = "linkup"


class LinkUpBadCredentials(LinkUpError):
    reason = "bad_credentials"
    needs_person = True

    def __init__(self) -> None:
        super().__init__(
            "LibreLink Up rejected the e-mail address or password. Check LINK_UP_USERNAME and "
            "LINK_UP_PASSWORD in the secret: they must be the login of the LibreLink Up (follower) app, "
            "not of the LibreLink app on the sensor wearer's phone. To protect the account from a lockout, "
            "no further login is tried until the secret is changed."
        )


class LinkUpActionRequired(LinkUpError):
    reason = "action_required"
    needs_person = True

    _WHAT: ClassVar[dict[str, str]] = {
        "tou": "accept the new Terms of Use",
        "pp": "accept the new Privacy Policy",
        "verifyEmail": "verify the account's e-mail address (follow the link in the e-mail from Abbott)",
    }

    def __init__(self, step: str, next_try: float | None = None) -> None:
        self.step = step
        self.next_try = next_try
        what = self._WHAT.get(step, f"complete the step '{step}' that the app asks for")
        super().__init__(
            f"LibreLink Up needs the account holder to act before it sends data again: open the "
            f"LibreLink Up app, log in with the follower account and {what}. Your password is fine. "
            + self._when(next_try)
        )

    @staticmethod
    def _when(next_try: float | None) -> str:
        if next_try is None:
            return "The bridge tries to log in again at most once an hour and resumes by itself after that."
        from datetime import UTC, datetime

        at = datetime.fromtimestamp(next_try, tz=UTC).strftime("%H:%M UTC")
        return (
            f"The bridge tries to log in again at most once an hour: the next try is at {at}, and it resumes "
            "by itself after that."
        )

    def with_next_try(self, next_try: float) -> None:
        """Name the moment of the next login (known once the breaker is stored)."""
        self.next_try = next_try
        self.message = self.message.rsplit(" The bridge tries", 1)[0] + " " + self._when(next_try)
        self.args = (self.message,)


class LinkUpLocked(LinkUpError):
    reason = "locked"

    def __init__(self, lockout_seconds: int) -> None:
        self.lockout_seconds = lockout_seconds
        super().__init__(
            f"LibreLink Up has locked the account for {lockout_seconds} seconds after too many failed "
            "logins. The bridge will not try to log in until the lock has passed. If this repeats, another "
            "app or device is using an old password for this account: update or remove it."
        )


class LinkUpVersionRejected(LinkUpError):
    reason = "version"
    needs_person = True

    def __init__(self, minimum_version: str | None, sent_version: str) -> None:
        self.minimum_version = minimum_version
        self.sent_version = sent_version
        if minimum_version and minimum_version.startswith("5."):
            text = (
                f"LibreLink Up now requires app version {minimum_version}: Abbott has retired the API this "
                "bridge uses (LibreLink Up 4). No setting can fix this; watch the project for an update. "
                "The bridge asks LibreLink Up again every hour, in case this was a mistake."
            )
        else:
            need = minimum_version or "a newer version"
            text = (
                f"LibreLink Up rejected app version {sent_version} and requires {need}. Set the "
                f"LinkUpVersion parameter (LINK_UP_VERSION) to {need} or to 'auto' so that it stays: edit "
                f"LinkUpVersion in parameter_overrides in samconfig.toml, then run make deploy (a one-off "
                "sam deploy --parameter-overrides is undone by the next make deploy, which uses the saved "
                "answers). Until then the bridge asks again every hour."
            )
        super().__init__(text)


class LinkUpVersionContradicted(LinkUpError):
    """A 920 reply that names no minimum, or one not above the version sent: it cannot be a real refusal
    (the version sent already meets it), so it is treated like a server error (the back-off), never as
    a stop that waits for a person."""

    reason = "server_error"

    def __init__(self, minimum_version: str | None, sent_version: str) -> None:
        self.minimum_version = minimum_version
        self.sent_version = sent_version
        self.status = 403
        named = f"names {minimum_version} as the minimum" if minimum_version else "names no minimum"
        super().__init__(
            f"LibreLink Up refused app version {sent_version} but {named}, which the version sent already "
            "meets: a passing fault on LibreLink Up's side. The bridge pauses and tries again by itself."
        )


class LinkUpUnauthorized(LinkUpError):
    reason = "unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "LibreLink Up did not accept the stored login (the session was revoked, often after Abbott's "
            "maintenance). The bridge logs in again once; if this repeats, check the account in the app."
        )


class LinkUpMissingHeader(LinkUpError):
    reason = "missing_header"
    needs_person = True

    def __init__(self) -> None:
        super().__init__(
            "LibreLink Up answered 'RequiredHeaderMissing': it expects a request header this version of "
            "linkup-sync does not send. Update linkup-sync; setting a newer LINK_UP_VERSION may also help."
        )


class LinkUpPatientNotFound(LinkUpError):
    reason = "patient_not_found"
    needs_person = True

    #: where the run took the patient id from -> how the message names it
    _ORIGINS: ClassVar[dict[str, str]] = {
        "setting": "from the LINK_UP_CONNECTION setting",
        "secret": "from LINK_UP_CONNECTION in the secret",
        "remembered": "remembered from an earlier run; it is forgotten now, so the next run chooses again",
        "discovered": "the first one in the account's connections",
    }

    def __init__(self, patient_id: str, known: list[str], *, origin: str | None = None) -> None:
        self.patient_id = patient_id
        self.known = list(known)
        self.origin = origin
        listed = ", ".join(self.known) if self.known else "none"
        shown = patient_id or "(none)"
        if origin and origin.startswith("TARGETS entry"):
            # A TARGETS entry must name its person: "leave it empty" would make the secret unusable.
            where = f" (from LINK_UP_CONNECTION in {origin} of the secret)"
            fix = f"Set LINK_UP_CONNECTION in {origin} to one of them (every TARGETS entry needs one)."
        else:
            where = f" ({self._ORIGINS.get(origin, origin)})" if origin else ""
            fix = "Set LINK_UP_CONNECTION to one of them, or leave it empty to use the only (or first) one."
        super().__init__(
            f"The patient id {shown}{where} is not followed by this LibreLink Up account. "
            f"Patient ids that exist: {listed}. {fix} If the id is right, LibreLink Up may be answering "
            "wrongly for a while: the bridge tries again on every run."
        )


class LinkUpNoConnections(LinkUpError):
    reason = "no_connections"
    needs_person = True

    def __init__(self) -> None:
        super().__init__(
            "This LibreLink Up account follows nobody yet. The sensor wearer must invite it from the "
            "LibreLink app (Connected Apps > LibreLinkUp), and the invitation must be accepted in the "
            "LibreLink Up app with this account."
        )


class LinkUpRateLimited(LinkUpError):
    reason = "rate_limited"

    def __init__(self, retry_after: int | None = None) -> None:
        self.retry_after = retry_after
        wait = f" for {retry_after} seconds" if retry_after else ""
        super().__init__(
            f"LibreLink Up is limiting requests from this network{wait}. The bridge pauses and tries again "
            "later by itself; nothing to do unless this lasts for hours."
        )


class LinkUpBlocked(LinkUpError):
    reason = "blocked"

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(
            f"LibreLink Up's firewall refused the request (HTTP {status}). The bridge pauses and tries again "
            "later; if this lasts, deploy the stack in another AWS region."
        )


class LinkUpMaintenance(LinkUpError):
    reason = "maintenance"

    def __init__(self) -> None:
        super().__init__("LibreLink Up is down for maintenance. The bridge tries again on its next runs.")


class LinkUpServerError(LinkUpError):
    reason = "server_error"

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(f"LibreLink Up had a server error (HTTP {status}). The bridge tries again on its next runs.")


class LinkUpTimeout(LinkUpError):
    reason = "timeout"

    def __init__(self, what: str = "LibreLink Up") -> None:
        super().__init__(f"{what} did not answer in time. The bridge tries again on its next run.")


class LinkUpUnreachable(LinkUpServerError):
    """No HTTP response at all (DNS, refused connection, TLS failure). A LinkUpServerError with status 0."""

    reason = "unreachable"

    def __init__(self, detail: str = "the connection failed") -> None:
        self.status = 0
        self.detail = detail
        LinkUpError.__init__(
            self, f"LibreLink Up could not be reached ({detail}). The bridge tries again on its next runs."
        )


class LinkUpTooLarge(LinkUpServerError):
    """A reply larger than the bridge reads (or one that inflates past it): a server fault, backed off."""

    reason = "too_large"

    def __init__(self, detail: str) -> None:
        self.status = 0
        self.detail = detail
        LinkUpError.__init__(
            self,
            f"LibreLink Up sent too much: {detail}. Nothing was stored; the bridge tries again on its next runs.",
        )


class LinkUpMalformedResponse(LinkUpError):
    reason = "malformed"

    def __init__(self, detail: str) -> None:
        super().__init__(
            f"LibreLink Up sent a response this bridge cannot read ({detail}). Nothing was changed; the "
            "next run tries again. If this persists, the API may have changed: update linkup-sync."
        )


class LinkUpRedirectLoop(LinkUpError):
    reason = "redirect_loop"
    needs_person = True

    def __init__(self, regions: list[str]) -> None:
        super().__init__(
            "LibreLink Up kept sending the login to another region (" + " -> ".join(regions) + "). "
            "Set LINK_UP_REGION to the region of the account's country (EU2 for the UK and Ireland)."
        )


# --- Nightscout ----------------------------------------------------------------------------------


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


# --- state ---------------------------------------------------------------------------------------


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
