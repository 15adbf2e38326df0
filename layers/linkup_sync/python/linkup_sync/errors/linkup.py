"""The errors of LibreLink Up: its login, its answers, its reach (the adapter in librelinkup/ raises them)."""

from __future__ import annotations

from typing import ClassVar

from .base import LinkupSyncError


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
