"""Cleaning up the NIGHTSCOUT_URL a person typed or pasted."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from ..http import check_url_scheme, is_loopback_host, is_private_host

_EXAMPLE = "expected something like https://my-site.herokuapp.com"
_API_SUFFIXES = ("/api/v1/entries.json", "/api/v1/entries", "/api/v1")
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
HTTP_WARNING = (
    "NIGHTSCOUT_ALLOW_HTTP=true: Nightscout at {url} is reached over plain http, so the API secret's hash "
    "(or the access token) travels unencrypted over the local network. Use this only on a network you trust."
)


def plain_http_to_private(url: str) -> bool:
    """True for an http:// address that is not loopback: one that NIGHTSCOUT_ALLOW_HTTP allowed (warn)."""
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback_host(parts.hostname)


def _valid_host(host: str) -> bool:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1] if host.endswith("]") else "x")
        except ValueError:
            return False
        return True
    host = host.rstrip(".")
    if not host or len(host) > 253:
        return False
    return all(_LABEL.match(label) for label in host.split("."))


def _garbage(text: str) -> ValueError:
    """The error for a text that is no web address, quoting it without what may be secret: a ?token=..., a
    #..., a user:password@."""
    shown = re.sub(r"^([^/]*//)?[^/@]*@", r"\1", re.split(r"[?#]", text, maxsplit=1)[0])
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ValueError(f"NIGHTSCOUT_URL '{shown}' is not a web address; {_EXAMPLE}.")


def _with_scheme(text: str, garbage: ValueError) -> str:
    """The text with https:// in front when it was typed without a scheme ('my-site.example.com')."""
    if "://" in text:
        return text
    if ":" in text.split("/", 1)[0] and not re.match(r"^[^:/]+:\d+(/|$)", text):
        raise garbage  # e.g. 'mailto:x' or 'javascript:...'
    return "https://" + text


def _check_scheme_and_extras(parts: SplitResult, text: str) -> None:
    """https (or http) only, and nothing but the site: no user:password@, no ?query, no #fragment."""
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"NIGHTSCOUT_URL must start with https:// ({_EXAMPLE}).")
    if "@" in parts.netloc:
        raise ValueError(
            "NIGHTSCOUT_URL must not contain a user name or password; put the token into NIGHTSCOUT_API_TOKEN."
        )
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(
            "NIGHTSCOUT_URL must be just the site address, without '?…' or '#…' (a token belongs in "
            f"NIGHTSCOUT_API_TOKEN); {_EXAMPLE}."
        )


def _host_and_port(parts: SplitResult, garbage: ValueError) -> tuple[str, str, int | None]:
    """(host[:port], host name, port), lower case, an international name in its ASCII (punycode) form."""
    host = parts.netloc.lower()
    try:
        port = parts.port
    except ValueError:
        raise garbage from None
    hostname = host.rsplit(":", 1)[0] if port is not None and not host.endswith("]") else host
    if port is not None and not 0 < port < 65536:
        raise garbage
    try:
        hostname.encode("ascii")
    except UnicodeEncodeError:
        try:
            ascii_host = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise garbage from None
        host = host.replace(hostname, ascii_host)
        hostname = ascii_host
    return host, hostname, port


def _check_site_host(hostname: str, *, explicit: bool, port: int | None, garbage: ValueError) -> None:
    # A bare single word ('my-site') is almost always an incomplete address. With a scheme or a port it is a
    # host name on the local network (docker-compose's http://nightscout:1337), as are localhost and IPv6.
    single_word = "." not in hostname.rstrip(".") and not hostname.startswith("[")
    named = explicit or port is not None or hostname.rstrip(".") == "localhost"
    if not _valid_host(hostname) or (single_word and not named):
        raise garbage


def _site_path(path: str) -> str:
    """The path without doubled slashes, a trailing slash or a pasted /api/v1(/entries(.json)), repeatedly."""
    path = re.sub(r"/{2,}", "/", path).rstrip("/")
    changed = True
    while changed:
        changed = False
        for suffix in _API_SUFFIXES:
            if path.lower().endswith(suffix):
                path = path[: -len(suffix)].rstrip("/")
                changed = True
    return path


def _private_http_allowed(scheme: str, hostname: str, *, allow_http: bool) -> bool:
    """True for http:// to a private-network host that NIGHTSCOUT_ALLOW_HTTP allows; raises when it does not."""
    if not (scheme == "http" and is_private_host(hostname) and not is_loopback_host(hostname)):
        return False
    if allow_http:
        return True
    raise ValueError(
        "NIGHTSCOUT_URL starts with http://. For a Nightscout on your local network, the command line "
        "accepts this with NIGHTSCOUT_ALLOW_HTTP=true (the API secret's hash then travels unencrypted over "
        "that network); otherwise use the https:// address of the site. The function in AWS always needs "
        "https://."
    )


def normalize_nightscout_url(raw: str, *, allow_http: bool = False) -> str:
    """The site's base URL: https://host[:port][/sub/path] without a trailing slash or /api/v1 suffix.

    Accepts the address with or without https:// and with a pasted /api/v1(/entries(.json)) part.
    `allow_http` (NIGHTSCOUT_ALLOW_HTTP, command line only) also accepts http:// to a private-network
    host, e.g. docker-compose's http://nightscout:1337. Raises ValueError with a message for the person
    who set the bridge up.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError(f"NIGHTSCOUT_URL is empty; {_EXAMPLE}.")
    text = raw.strip()
    garbage = _garbage(text)
    if any(ch.isspace() for ch in text) or any(ord(ch) < 32 for ch in text):
        raise garbage
    explicit = "://" in text  # typed with a scheme: a single-label host is meant, not a truncated address
    text = _with_scheme(text, garbage)
    parts = urlsplit(text)
    _check_scheme_and_extras(parts, text)
    scheme = parts.scheme.lower()
    host, hostname, port = _host_and_port(parts, garbage)
    _check_site_host(hostname, explicit=explicit, port=port, garbage=garbage)
    url = f"{scheme}://{host}{_site_path(parts.path)}"
    if _private_http_allowed(scheme, hostname, allow_http=allow_http):
        return url
    try:
        check_url_scheme(url, name="NIGHTSCOUT_URL")
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return url
