"""The words an incident is told in: the alert e-mails (first, reminder, all-clear) and the Nightscout
announcements. Built only from an incident record's fixed wording and the typed errors' messages, never
from a password, token, secret or hash of one."""

from __future__ import annotations

from datetime import UTC, datetime

from .model import IncidentRecord

SUBJECT_MAX = 99  # SNS refuses subjects of 100 characters or more


def _when(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _ago(seconds: float) -> str:
    minutes = max(0, int(seconds // 60))
    if minutes < 120:
        return f"{minutes} minutes"
    hours = minutes // 60
    return f"{hours} hours" if hours < 48 else f"{hours // 24} days"


def _subject(prefix: str, title: str) -> str:
    text = f"linkup-sync: {prefix}{title}"
    text = text.encode("ascii", "replace").decode("ascii").replace("\n", " ")
    return text if len(text) <= SUBJECT_MAX else text[: SUBJECT_MAX - 3] + "..."


def _titled(record: IncidentRecord) -> str:
    return f"{record.title} ({record.person})" if record.person else record.title


def email_open(record: IncidentRecord, now: int) -> tuple[str, str]:
    return _subject("", _titled(record)), _body(record, now, headline="")


def email_reminder(record: IncidentRecord, now: int) -> tuple[str, str]:
    headline = f"REMINDER: this is still not solved after {_ago(now - record.opened_at)}.\n\n"
    return _subject("still open: ", _titled(record)), _body(record, now, headline=headline)


def email_clear(record: IncidentRecord, now: int) -> tuple[str, str]:
    lines = [
        f"Solved: {record.title}.",
        "",
        f"Readings flow again since {_when(now)}. The problem began {_when(record.opened_at)} "
        f"({_ago(now - record.opened_at)} before). Nothing more to do.",
    ]
    if record.person:
        lines += ["", f"Person: {record.person}"]
    return _subject("solved: ", _titled(record)), "\n".join(lines) + "\n"


def _body(record: IncidentRecord, now: int, *, headline: str) -> str:
    lines = [
        f"What happened: {record.what}",
        "",
        f"Since: {_when(record.opened_at)} ({_ago(now - record.opened_at)} ago)",
    ]
    if record.person:
        lines.append(f"Person: {record.person}")
    lines += ["", f"What to do: {record.todo}", "", "You get one more e-mail when it is solved."]
    return headline + "\n".join(lines) + "\n"


def announcement_open(record: IncidentRecord) -> str:
    return f"linkup-sync: {_titled(record)}. {record.todo}"


def announcement_clear(record: IncidentRecord) -> str:
    return f"linkup-sync: solved: {_titled(record)}. Readings flow again."
