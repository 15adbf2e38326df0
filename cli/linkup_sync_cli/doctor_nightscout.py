"""doctor's Nightscout checks. They store nothing in Nightscout.

`GET /api/v1/status.json` (anonymous, so a wrong token costs no AUTH_FAIL_DELAY there) for reachability
and version, then `POST /api/v1/entries/preview.json` (API v1) or the JWT exchange (API v3) to see
whether the token may upload, and whether it may post the Sensor Start treatment.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from linkup_sync.errors import NightscoutUnauthorized, NightscoutUnreachable
from linkup_sync.nightscout.transport import not_found_text

from .reporter import Reporter

if TYPE_CHECKING:
    import urllib3

    from linkup_sync.http import HttpResult
    from linkup_sync.model import Target

V1_PERMISSIONS = ("api:entries:create", "api:entries:read")  # nightscout/v1.py, POST /api/v1/entries
V3_PERMISSIONS = ("api:entries:create", "api:entries:read", "api:entries:update")
TREATMENTS_V1 = ("api:treatments:create", "api:treatments:read")  # nightscout/v1.py, post_sensor_start
TREATMENTS_V3 = ("api:treatments:create", "api:treatments:update")  # nightscout/v3.py, TREATMENTS_ROLE


def _send(
    pool: urllib3.PoolManager,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> HttpResult:
    import urllib3

    from linkup_sync.http import send

    return send(
        pool,
        method,
        url,
        headers=dict(headers or {"Accept": "application/json"}),
        body=body,
        timeout=urllib3.Timeout(connect=5.0, read=15.0),
    )


def _json(result: HttpResult) -> Any:
    try:
        return json.loads(result.data)
    except (ValueError, UnicodeDecodeError):
        return None


def _redirect_text(base: str, location: str) -> str:
    target = urlsplit(location)
    if target.scheme.lower() == "https" and base.startswith("http://"):
        return "the site redirects to https: fix NIGHTSCOUT_URL to start with https://."
    where = f" ({target.scheme}://{target.hostname})" if target.scheme and target.hostname else ""
    return (
        f"the site redirects to another address{where}: put the final https:// address of the site into NIGHTSCOUT_URL."
    )


def _not_nightscout(base: str, what: str) -> str:
    return (
        f"the answer ({what}) is not what Nightscout sends, so NIGHTSCOUT_URL probably does not point to a "
        f"Nightscout site (or a proxy or login page is in front of it). Open {base}/api/v1/status.json in a "
        "browser to check."
    )


def _probe_server(r: Reporter, title: str, base: str, pool: urllib3.PoolManager) -> bool:
    """Reachability and version, anonymously. True when the site answered like Nightscout."""
    from linkup_sync.http import TransportError

    r.start(title)
    try:
        result = _send(pool, "GET", base + "/api/v1/status.json")
        version: object = None
        if result.status == 200:
            parsed = _json(result)
            if not isinstance(parsed, dict) or "version" not in parsed:
                r.fail(title, _not_nightscout(base, f"HTTP 200, {result.content_type or 'no content type'}"))
                return False
            version = parsed.get("version")
            r.ok(title, f"Nightscout {version} answers at {base}")
            return True
        if result.status in (401, 403):
            # AUTH_DEFAULT_ROLES=denied: the status needs a login; /api/v3/version is public (Nightscout >= 13)
            v3 = _send(pool, "GET", base + "/api/v3/version")
            parsed = _json(v3) if v3.status == 200 else None
            info = parsed.get("result") if isinstance(parsed, dict) else None
            version = info.get("version") if isinstance(info, dict) else None
            shown = f"Nightscout {version}" if version else "Nightscout (its version is not public)"
            r.ok(title, f"{shown} answers at {base}")
            return True
        if result.status in (301, 302, 303, 307, 308):
            r.fail(title, _redirect_text(base, result.headers.get("location", "")))
        elif result.status == 404:
            r.fail(title, not_found_text("/api/v1/status.json"))
        elif result.status >= 500:
            r.fail(
                title,
                f"the site answered HTTP {result.status}: it is down or still starting (some hosts "
                "put idle sites to sleep). Open it in a browser, then run doctor again.",
            )
        else:
            r.fail(title, _not_nightscout(base, f"HTTP {result.status}"))
    except TransportError as exc:
        r.fail(
            title,
            NightscoutUnreachable(exc.detail).message,
            [f"Fix: check NIGHTSCOUT_URL and that the site is up: open {base} in a browser."],
        )
    return False


def _permits(granted: str, wanted: str) -> bool:
    """Shiro-style permission match, as Nightscout does it: '*' parts, missing parts mean everything."""
    have, need = granted.split(":"), wanted.split(":")
    for i, part in enumerate(need):
        if i >= len(have):
            return True
        if have[i] != "*" and part not in have[i].split(","):
            return False
    return all(p == "*" for p in have[len(need) :])


def _check_token_v1(
    r: Reporter, title: str, base: str, token: str, pool: urllib3.PoolManager, clock: Callable[[], float]
) -> bool:
    from linkup_sync.http import TransportError
    from linkup_sync.nightscout.auth import api_secret_header
    from linkup_sync.readings import Reading

    now_ms = int(clock() // 60 * 60 * 1000)
    sample = Reading(epoch_ms=now_ms, sgv=100, direction="Flat", source="current")
    entry = {
        "type": "sgv",
        "sgv": sample.sgv,
        "date": sample.epoch_ms,
        "dateString": sample.iso_utc,
        "direction": sample.direction,
        "device": "linkup-sync",
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json", "api-secret": api_secret_header(token)}
    r.start(title)
    try:
        result = _send(
            pool, "POST", base + "/api/v1/entries/preview.json", headers=headers, body=json.dumps([entry]).encode()
        )
    except TransportError as exc:
        r.fail(title, NightscoutUnreachable(exc.detail).message)
        return False
    if result.status == 200 and isinstance(_json(result), list):
        r.ok(
            title, "the token may upload entries (checked with POST /api/v1/entries/preview.json, which stores nothing)"
        )
        return True
    if result.status == 401:
        from linkup_sync.nightscout.v3 import is_access_token

        granted: list[str] | None = None
        if is_access_token(token):  # ask Nightscout whether it knows the token at all, and what it may do
            try:
                _status, granted = _exchange(base, token, pool)
            except TransportError:
                granted = None
        missing = _missing(granted, V1_PERMISSIONS) if granted is not None else []
        if granted is not None and missing:
            r.fail(
                title,
                "Nightscout knows the token, but its role may not upload readings: it needs "
                + " and ".join(V1_PERMISSIONS)
                + ". Add the missing permissions to the role in Admin Tools (the token stays the same).",
                ["Missing: " + ", ".join(missing)],
            )
            return False
        r.fail(
            title,
            NightscoutUnauthorized().message,
            [
                "From the command line the token is the environment variable NIGHTSCOUT_API_TOKEN. A role with only "
                "api:entries:create is not enough: Nightscout also checks api:entries:read."
            ],
        )
    else:
        r.fail(
            title,
            f"the upload check (POST /api/v1/entries/preview.json) answered HTTP {result.status}; "
            "the token could not be confirmed. Check NIGHTSCOUT_URL.",
        )
    return False


def _exchange(base: str, token: str, pool: urllib3.PoolManager) -> tuple[int, list[str] | None]:
    """The JWT exchange (stores nothing): HTTP status and the token's permissions. The JWT is dropped."""
    result = _send(pool, "GET", base + "/api/v2/authorization/request/" + quote(token.strip(), safe=""))
    parsed = _json(result)
    if result.status != 200 or not isinstance(parsed, dict) or not isinstance(parsed.get("permissionGroups"), list):
        return result.status, None
    return 200, [str(p) for group in parsed["permissionGroups"] if isinstance(group, list) for p in group]


def _missing(granted: list[str], wanted: Iterable[str]) -> list[str]:
    return [w for w in wanted if not any(_permits(g, w) for g in granted)]


def _check_token_v3(r: Reporter, title: str, base: str, token: str, pool: urllib3.PoolManager) -> list[str] | None:
    """The token's permissions when it may upload with API v3, else None."""
    from linkup_sync.http import TransportError
    from linkup_sync.nightscout.v3 import ENTRIES_ROLE, UNKNOWN_SUBJECT_TEXT, is_access_token, needs_subject_text

    r.start(title)
    if not is_access_token(token):
        r.fail(title, needs_subject_text(token) + ".")
        return None
    try:
        status, granted = _exchange(base, token, pool)
    except TransportError as exc:
        r.fail(title, NightscoutUnreachable(exc.detail).message)
        return None
    if status == 401:
        r.fail(title, UNKNOWN_SUBJECT_TEXT)
        return None
    if granted is None:
        r.fail(
            title,
            f"the token exchange (GET /api/v2/authorization/request/…) answered HTTP {status}; "
            "the token could not be confirmed. Check NIGHTSCOUT_URL.",
        )
        return None
    missing = _missing(granted, V3_PERMISSIONS)
    if missing:
        r.fail(title, f"Nightscout knows the token, but {ENTRIES_ROLE}.", ["Missing: " + ", ".join(missing)])
        return None
    r.ok(
        title,
        "the token may upload with API v3 (its role has api:entries:create, read and update; checked "
        "with the JWT exchange, which stores nothing)",
    )
    return granted


def _check_treatments(
    r: Reporter, title: str, base: str, token: str, pool: urllib3.PoolManager, api_v3: bool, granted: list[str] | None
) -> None:
    """NIGHTSCOUT_SENSOR_START: may the token post the Sensor Start treatment? Only an access token can be asked."""
    from linkup_sync.http import TransportError
    from linkup_sync.nightscout.v3 import is_access_token

    if not is_access_token(token):
        return  # the API_SECRET may do everything; a SHA-1 cannot be looked up
    wanted = TREATMENTS_V3 if api_v3 else TREATMENTS_V1
    r.start(title)
    if granted is None:
        try:
            _status, granted = _exchange(base, token, pool)
        except TransportError:
            granted = None
        if granted is None:
            r.skip(title, "Nightscout did not list the token's permissions")
            return
    missing = _missing(granted, wanted)
    if missing:
        r.fail(
            title,
            "the token may upload readings, but not the Sensor Start treatment that shows the sensor's "
            f"age in Nightscout: its role also needs {' and '.join(wanted)}. Add them to the role in Admin "
            "Tools, or set NIGHTSCOUT_SENSOR_START=false.",
            ["Missing: " + ", ".join(missing)],
        )
    else:
        r.ok(title, "the token may also post the Sensor Start treatment (" + ", ".join(wanted) + ")")


def check_nightscout(
    r: Reporter,
    target: Target,
    api_v3: bool,
    sensor_start: bool,
    clock: Callable[[], float],
    suffix: str,
    allow_http: bool = False,
) -> None:
    from linkup_sync.http import make_pool
    from linkup_sync.nightscout.url import HTTP_WARNING, normalize_nightscout_url, plain_http_to_private

    titles = (
        f"Nightscout URL{suffix}",
        f"Nightscout server{suffix}",
        f"Nightscout token{suffix}",
        f"Sensor Start treatment{suffix}",
    )
    r.start(titles[0])
    try:
        base = normalize_nightscout_url(target.nightscout_url, allow_http=allow_http)
    except ValueError as exc:
        r.fail(titles[0], str(exc))
        r.skip(titles[1], "needs a usable NIGHTSCOUT_URL")
        r.skip(titles[2], "needs a usable NIGHTSCOUT_URL")
        return
    r.ok(titles[0], base, ["Warning: " + HTTP_WARNING.format(url=base)] if plain_http_to_private(base) else [])
    pool = make_pool()
    if not _probe_server(r, titles[1], base, pool):
        r.skip(titles[2], "needs a reachable Nightscout")
        return
    granted: list[str] | None = None
    if api_v3:
        granted = _check_token_v3(r, titles[2], base, target.nightscout_token, pool)
        ok = granted is not None
    else:
        ok = _check_token_v1(r, titles[2], base, target.nightscout_token, pool, clock)
    if ok and sensor_start:
        _check_treatments(r, titles[3], base, target.nightscout_token, pool, api_v3, granted)
