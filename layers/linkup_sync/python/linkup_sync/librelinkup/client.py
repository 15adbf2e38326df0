"""LibreLink Up follower API client (implements ports.LinkUpSource).

One HTTP request per call (plus login redirects); never retries by itself: the caller decides, because
repeated logins can lock the account (docs/librelinkup-api.md §5.6, §13.2).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import urllib3

from ..errors import (
    LinkUpActionRequired,
    LinkUpError,
    LinkUpMalformedResponse,
    LinkUpRedirectLoop,
    LinkUpTimeout,
    LinkUpTooLarge,
    LinkUpUnreachable,
)
from ..http import (
    Deadline,
    TransportError,
    check_url_scheme,
    make_pool,
    request_timeout,
)
from ..http_request import send
from ..model import Connection, Graph, Ticket
from . import parsing, replies
from .regions import DEFAULT_URL_TEMPLATE, base_url, normalize_region, redirect_region
from .versions import DEFAULT_VERSION

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
MAX_REDIRECTS = 2
MAX_ACCEPT_STEPS = 4  # documents accepted in one login, at most (tou, pp, and a margin for re-issues)
ACCEPTABLE_STEPS = frozenset({"tou", "pp"})  # verifyEmail and anything else is for the person to do

# The most of one reply the client reads, decoded: a graph (12 h of readings) is well under 100 kB.
MAX_REPLY_BYTES = 4 * 1024 * 1024

_PATH_LOGIN = "/llu/auth/login"
_PATH_CONNECTIONS = "/llu/connections"


class LinkUpClient:
    """urllib3 client of the LibreLink Up v4 `/llu` API."""

    def __init__(
        self,
        *,
        url_template: str = DEFAULT_URL_TEMPLATE,
        version: str = DEFAULT_VERSION,
        pool: urllib3.PoolManager | None = None,
        deadline: Deadline | None = None,
        product: str = "llu.ios",
        user_agent: str = DEFAULT_USER_AGENT,
        auto_accept_terms: bool = False,
    ) -> None:
        if "{region}" not in url_template:
            raise ValueError("The LibreLink Up URL template must contain '{region}'.")
        check_url_scheme(base_url(url_template, "eu"), name="The LibreLink Up URL")
        self.url_template = url_template
        self.version = version
        self.product = product
        self.user_agent = user_agent
        self.pool = pool if pool is not None else make_pool()
        self.deadline = deadline
        self.auto_accept_terms = auto_accept_terms
        self.requests_made = 0
        self.accepted_steps: list[str] = []

    def __repr__(self) -> str:
        return f"LinkUpClient(url_template={self.url_template!r}, version={self.version!r})"

    # --- ports.LinkUpSource ----------------------------------------------------------------------

    def login(self, username: str, password: str, region: str) -> Ticket:
        """POST /llu/auth/login, following at most 2 region redirects (never back to a visited region)."""
        current = normalize_region(region)
        visited = [current]
        body = json.dumps({"email": username, "password": password}).encode("utf-8")
        accept = ACCEPTABLE_STEPS if self.auto_accept_terms else frozenset()
        try:
            while True:
                payload = self._call(
                    "POST", current, _PATH_LOGIN, body=body, ticket=None, during_login=True, accept_steps=accept
                )
                payload = self._accept_steps(current, payload, accept)
                raw_region = parsing.login_redirect(payload)
                if raw_region is None:
                    return parsing.parse_login(payload, current)
                target = redirect_region(raw_region)
                if target is None:
                    raise LinkUpMalformedResponse("the login redirect names no usable region")
                if target in visited or len(visited) > MAX_REDIRECTS:
                    raise LinkUpRedirectLoop([r.upper() for r in [*visited, target]])
                visited.append(target)
                current = target
        except LinkUpError as exc:
            # A reply that echoes the request (a proxy's error page, a misbehaving server) must not carry
            # the password into the message: server text that looks harmless is quoted in some messages.
            if password and password in exc.message:
                exc.message = exc.message.replace(password, "[redacted]")
                exc.args = (exc.message,)
            raise

    def _accept_steps(self, region: str, payload: dict[str, Any], accept: frozenset[str]) -> dict[str, Any]:
        """LINK_UP_AUTO_ACCEPT_TERMS: accept each offered tou/pp once via POST /auth/continue/{type}."""
        while (step := parsing.login_step(payload)) is not None:
            step_type, step_token = step
            if step_type in self.accepted_steps or len(self.accepted_steps) >= MAX_ACCEPT_STEPS:
                raise LinkUpActionRequired(step_type)
            self.accepted_steps.append(step_type)
            payload = self._call(
                "POST",
                region,
                f"/auth/continue/{step_type}",
                body=None,
                ticket=None,
                during_login=True,
                accept_steps=accept,
                bearer=step_token,
            )
        return payload

    def connections(self, ticket: Ticket) -> list[Connection]:
        """GET /llu/connections. [] when the account follows nobody (the caller decides what that means)."""
        payload = self._call("GET", ticket.region, _PATH_CONNECTIONS, body=None, ticket=ticket)
        return parsing.parse_connections(payload)

    def graph(self, ticket: Ticket, patient_id: str) -> Graph:
        """GET /llu/connections/{patient_id}/graph: the current reading plus ~12 h of history."""
        path = f"{_PATH_CONNECTIONS}/{quote(patient_id, safe='')}/graph"
        payload = self._call("GET", ticket.region, path, body=None, ticket=ticket, patient_id=patient_id)
        return parsing.parse_graph(patient_id, payload)

    # --- transport -------------------------------------------------------------------------------

    def headers(self, ticket: Ticket | None, bearer: str | None = None) -> dict[str, str]:
        """The request headers of spec §3.5 (Account-Id is empty before login)."""
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "Cache-Control": "no-cache",
            "Pragma": "no-cache",
            "product": self.product,
            "version": self.version,
            "User-Agent": self.user_agent,
            "Account-Id": "",
        }
        if ticket is not None:
            headers["Authorization"] = f"Bearer {ticket.token}"
            headers["Account-Id"] = ticket.account_id
        elif bearer is not None:  # a step ticket: only for /auth/continue, which has no Account-Id yet
            headers["Authorization"] = f"Bearer {bearer}"
        return headers

    def _call(
        self,
        method: str,
        region: str,
        path: str,
        *,
        body: bytes | None,
        ticket: Ticket | None,
        during_login: bool = False,
        patient_id: str = "",
        accept_steps: frozenset[str] = frozenset(),
        bearer: str | None = None,
    ) -> dict[str, Any]:
        url = base_url(self.url_template, region) + path
        check_url_scheme(url, name="The LibreLink Up URL")
        expired = LinkUpTimeout("LibreLink Up (the run's time budget is used up)")
        timeout = request_timeout(self.deadline, expired=expired)
        self.requests_made += 1
        try:
            result = send(
                self.pool,
                method,
                url,
                headers=self.headers(ticket, bearer),
                body=body,
                timeout=timeout,
                max_body=MAX_REPLY_BYTES,
            )
        except TransportError as exc:
            if exc.kind == "timeout":
                raise LinkUpTimeout() from None
            if exc.kind == "too_large":
                raise LinkUpTooLarge(exc.detail) from None
            if exc.kind == "decode":
                raise LinkUpMalformedResponse(exc.detail) from None
            raise LinkUpUnreachable(exc.detail) from None
        return replies.classify(
            result.status,
            result.content_type,
            result.data,
            during_login=during_login,
            version=self.version,
            patient_id=patient_id,
            retry_after=result.headers.get("retry-after"),
            accept_steps=accept_steps,
        )
