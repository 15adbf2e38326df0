"""What an incident is and which failure means which one: the records, their kinds and slots, and the
catalogue that turns a typed error into the words for the person. Data only: it imports no interface,
so ports.py can name these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import (
    ConfigError,
    LinkUpActionRequired,
    LinkUpBadCredentials,
    LinkUpNoConnections,
    LinkUpPatientNotFound,
    LinkupSyncError,
    LinkUpVersionRejected,
    NightscoutRejected,
    NightscoutUnauthorized,
)

REMINDER_AFTER_S = 24 * 3600

# The slots of an incident: each message is sent by the run that claimed its slot.
# Announcement slots are per Nightscout site: "ann_open:<site digest>".
EMAIL_OPEN, EMAIL_CLEAR, ANN_OPEN, ANN_CLEAR = "email_open", "email_clear", "ann_open", "ann_clear"
ANN_REFUSED = "ann_refused"  # that site refused announcements for this opening: no more attempts

# Kinds whose cause is at LibreLink Up or in the secret: solved when readings flow from LibreLink Up again.
ACCOUNT_KINDS = ("bad_credentials", "action_required", "version", "api_retired", "patient_gone", "secret")


@dataclass(frozen=True)
class Incident:
    """What one run saw go wrong, with the words for the person."""

    kind: str
    scope: str  # "" = the whole stack; else the patient's short hash
    title: str  # short and specific: the e-mail subject and the announcement's first words
    what: str  # what happened, in full
    todo: str  # what to do: the app step, the setting or the command
    person: str = ""  # initials, only in a stack that serves several people
    email: bool = True
    announce: bool = True  # False for Nightscout-side incidents: Nightscout cannot show them

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.scope)


@dataclass(frozen=True)
class IncidentRecord:
    """An incident as stored. `gen` counts its openings; a slot holds the Unix time it was claimed."""

    kind: str
    scope: str
    gen: int
    opened_at: int
    title: str
    what: str
    todo: str
    person: str = ""
    email: bool = True
    announce: bool = True
    closed_at: int | None = None
    slots: Mapping[str, int] = field(default_factory=dict)
    email_last: int | None = None  # when the last e-mail of this opening (first or reminder) was sent
    reminders: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.scope)

    @property
    def is_open(self) -> bool:
        return self.closed_at is None


# --- the catalogue -------------------------------------------------------------------------------------

_STEP_TITLES = {
    "tou": ("LibreLink Up wants new terms accepted", "accept the new Terms of Use"),
    "pp": ("LibreLink Up wants a new privacy policy accepted", "accept the new Privacy Policy"),
    "verifyEmail": (
        "LibreLink Up wants the e-mail address verified",
        "verify the e-mail address (follow the link in the e-mail from Abbott)",
    ),
}


def incident_for(exc: BaseException, *, scope: str = "", person: str = "", secret_hint: str = "") -> Incident | None:
    """The incident a run's failure means, or None when it passes by itself (outages, rate limits)."""
    if isinstance(exc, LinkUpBadCredentials):
        return Incident(
            "bad_credentials",
            "",
            "LibreLink Up rejected the password",
            "LibreLink Up rejected the e-mail address or password of the follower account. To protect the "
            "account from a lockout, the bridge tries no further login until the secret changes.",
            "Put the login of the LibreLink Up (follower) app into LINK_UP_USERNAME and LINK_UP_PASSWORD of "
            "the secret" + (f": {secret_hint}" if secret_hint else "") + ". The next run uses it.",
        )
    if isinstance(exc, LinkUpActionRequired):
        title, step = _STEP_TITLES.get(exc.step, ("LibreLink Up wants the account holder to act", "do what it asks"))
        return Incident(
            "action_required",
            "",
            title,
            "LibreLink Up sends no readings until the follower account's holder acts. The password is fine.",
            f"Open the LibreLink Up app, sign in as the follower and {step}. The bridge resumes by itself.",
        )
    if isinstance(exc, LinkUpVersionRejected):
        retired = bool(exc.minimum_version and exc.minimum_version.startswith("5."))
        return Incident(
            "version",  # one kind: the breaker behind both is the same (a refused version)
            "",
            "LibreLink Up retired the API this bridge uses" if retired else "LibreLink Up refused the app version",
            exc.message,
            "Watch the linkup-sync project for an update that supports LibreLink Up 5, then deploy it."
            if retired
            else f"Set the LinkUpVersion parameter to {exc.minimum_version or 'a newer version'} or to auto "
            f"(sam deploy --parameter-overrides LinkUpVersion={exc.minimum_version or 'auto'}).",
        )
    if isinstance(exc, LinkUpPatientNotFound | LinkUpNoConnections):
        return Incident(
            "patient_gone",
            scope,
            "LibreLink Up no longer shares the followed person's readings",
            "The LibreLink Up follower account does not follow this person (any more): the invitation was "
            "withdrawn or never accepted, or LINK_UP_CONNECTION names someone else.",
            "The sensor wearer invites the follower again in the LibreLink app (Connected Apps > LibreLinkUp) "
            "and the invitation is accepted in the LibreLink Up app; or correct LINK_UP_CONNECTION.",
            person=person,
        )
    if isinstance(exc, ConfigError):  # SecretError included: the secret is empty, incomplete or unusable
        return Incident(
            "secret",
            "",
            "The credentials secret is empty or incomplete",
            exc.message,
            "Set the secret's value as JSON with LINK_UP_USERNAME, LINK_UP_PASSWORD, NIGHTSCOUT_URL and "
            "NIGHTSCOUT_API_TOKEN" + (f": {secret_hint}" if secret_hint else "") + ". The next run uses it.",
        )
    if token_refused(exc):
        return Incident(
            "nightscout_token",
            scope,
            "Nightscout refuses the bridge's token",
            exc.message if isinstance(exc, LinkupSyncError) else str(exc),
            "Put a working NIGHTSCOUT_API_TOKEN into the secret (the site's API_SECRET, or an access token whose "
            "role has api:entries:create and api:entries:read)"
            + (f": {secret_hint}" if secret_hint else "")
            + ". The next run uses it.",
            person=person,
            announce=False,  # Nightscout refuses us: it cannot show an announcement either
        )
    return None


def stale_incident(minutes: int, *, scope: str, person: str = "") -> Incident:
    """LibreLink Up itself has nothing new (sensor or phone side) while the bridge works: Nightscout only."""
    return Incident(
        "stale",
        scope,
        f"LibreLink Up has had no new reading for {minutes} minutes",
        "The bridge reaches LibreLink Up, but LibreLink Up has no newer reading.",
        "Check the sensor and the phone of the sensor wearer: is the LibreLink app showing readings, is the "
        "phone online and is the app allowed to run in the background?",
        person=person,
        email=False,  # the stale-data alarm (CloudWatch) e-mails; this one is for Nightscout's screen
    )


def token_refused(exc: BaseException | None) -> bool:
    """Nightscout refuses the bridge's token: a 401, or a 403 (a role without the entries permissions)."""
    if isinstance(exc, NightscoutRejected):
        return "HTTP 403" in exc.message
    return isinstance(exc, NightscoutUnauthorized)


def is_nightscout_refusal(exc: BaseException) -> bool:
    return isinstance(exc, NightscoutUnauthorized | NightscoutRejected)
