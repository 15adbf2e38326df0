"""Security: no secret on any error path, least privilege as used, TLS always verified, http only to loopback.

- Every LibreLink Up and Nightscout failure mode goes through the real handler (simulators on loopback,
  moto), including replies that echo a secret back; the password, the Nightscout token and its hashes,
  every LibreLink Up token and Account-Id, and API v3 JWTs must be absent from the log lines and metrics,
  from str() and repr() of the raised error and from the returned dicts. (The soak, tools/soak.py, scans
  the output of its thousands of runs the same way.)
- IAM: tests/template/test_template.py::test_function_role_is_least_privilege pins the exact actions
  and resources of the function's role (so no Scan, DeleteItem, BatchWriteItem, kms or xray, and no `*`
  resource). Here: the trust policies, no resource policy that widens access, and the actions and
  resources the code really uses are exactly the granted ones.
- TLS verification cannot be turned off; plain http is accepted only for loopback hosts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import re
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pytest
import urllib3
from tools.local_stack import EMAIL, PASSWORD, LocalStack, aws_environment, moto_server

from linkup_sync import errors
from linkup_sync.http import TransportError, check_url_scheme, make_pool
from linkup_sync.http_request import send
from linkup_sync.librelinkup.client import LinkUpClient
from linkup_sync.nightscout.url import normalize_nightscout_url
from linkup_sync.nightscout.v1 import NightscoutV1
from linkup_sync.nightscout.v3 import NightscoutV3
from linkup_sync.settings import Settings
from tests.support.librelinkup import fixture_bytes
from tests.support.template import (
    OPENING_RESOURCE_TYPES,
    function_role_statements,
    invoke_only,
    schedule_role_statements,
    transformed_template,
)

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "linkup_sync" / "python" / "linkup_sync"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


class Sink(io.StringIO):
    pass


@pytest.fixture
def stack(moto_endpoint: str) -> Iterator[LocalStack]:
    with aws_environment(moto_endpoint), LocalStack(moto_endpoint, log_sink=Sink()) as s:
        yield s


# --- secrets on every error path ----------------------------------------------------------------------


def secrets_of(stack: LocalStack, extra: tuple[str, ...] = ()) -> list[str]:
    """Everything that must never be shown: what the bridge was given and what it was issued."""
    token = stack.ns_token
    values = [
        PASSWORD,
        token,
        hashlib.sha1(token.encode()).hexdigest(),  # noqa: S324 - Nightscout's scheme
        hashlib.sha256(token.encode()).hexdigest(),
        *extra,
    ]
    for request in stack.llu.requests:
        values.append(request.headers.get("authorization", "").removeprefix("Bearer ").strip())
        values.append(request.headers.get("account-id", "").strip())
    for ns_request in stack.ns.requests:
        for name in ("authorization", "api-secret"):
            values.append(ns_request.headers.get(name, "").removeprefix("Bearer ").strip())
    values.append(stack.account.user_id)
    return sorted({v for v in values if v}, key=len)


@dataclass
class Case:
    """A failure: what to set up after a healthy first run, and the error the next run must raise."""

    setup: Callable[[LocalStack], object]  # often a lambda doing several steps as a tuple
    error: type[errors.LinkupSyncError]
    healthy_first: bool = True
    env: dict[str, str] = field(default_factory=dict)
    extra_secrets: tuple[str, ...] = ()


def ticket_token(s: LocalStack) -> str:
    ticket = s.stored_account().account.ticket
    assert ticket is not None
    return str(ticket.token)


def relogin(s: LocalStack) -> None:
    s.llu.revoke_tokens()


def llu_echo_page(s: LocalStack) -> str:
    """An error page reflecting what a LibreLink Up request carries (a proxy's or a debugging server's)."""
    return f"<html><body>request: {ticket_token(s)} {s.account.account_id}</body></html>"


def ns_echo_page(s: LocalStack) -> str:
    """An error page reflecting what a Nightscout request carries: the token, its SHA-1, the v3 JWT."""
    sent = [r.headers.get("authorization", "").removeprefix("Bearer ") for r in s.ns.requests]
    known = [s.ns_token, hashlib.sha1(s.ns_token.encode()).hexdigest(), *filter(None, sent)]  # noqa: S324
    return "<html><body>request: " + " ".join(known) + "</body></html>"


def llu_echo_json(s: LocalStack, status: int, path: str, value: str) -> None:
    """A JSON error reply whose message fields echo `value` (plain text passes the message filter)."""
    body = {"status": 7, "message": value, "error": {"message": value}}
    s.llu.fail_next(1, status=status, body=json.dumps(body), path=path)


def entries_path(s: LocalStack) -> str:
    return "/api/v3/entries" if s.env.get("NIGHTSCOUT_API_V3") == "true" else "/api/v1/entries"


def ns_fail(status: int, **kwargs: Any) -> Callable[[LocalStack], None]:
    """The entries upload answers `status` (for API v3 a 401 to every try: v3 renews its JWT once after one)."""

    def setup(s: LocalStack) -> None:
        v3 = s.env.get("NIGHTSCOUT_API_V3") == "true"
        s.ns.fail_next(
            8 if v3 and status == 401 else 1, status=status, body=ns_echo_page(s), path=entries_path(s), **kwargs
        )

    return setup


def ns_wrong_token(s: LocalStack) -> None:
    s.put_secret(ns_token=WRONG_NS_TOKEN)
    s.ns.rotate_jwt_key()  # API v3 would go on with the JWT stored for the old token until it expires
    s.new_container()


WRONG_NS_TOKEN = "bridge-0123456789abcdef"
WRONG_PASSWORD = "an old password 42"

LLU_CASES: dict[str, Case] = {
    "bad_credentials": Case(
        lambda s: (s.put_secret(password=WRONG_PASSWORD), relogin(s), s.new_container()),
        errors.LinkUpBadCredentials,
        extra_secrets=(WRONG_PASSWORD,),
    ),
    "action_required": Case(lambda s: (s.llu.force_steps(EMAIL, ["tou"]), relogin(s)), errors.LinkUpActionRequired),
    "locked": Case(
        lambda s: (
            relogin(s),
            s.llu.fail_next(1, status=200, body=fixture_bytes("login-locked.json"), path="/llu/auth/login"),
        ),
        errors.LinkUpLocked,
    ),
    "version_rejected": Case(lambda s: s.llu.set_min_version("4.99.0"), errors.LinkUpVersionRejected),
    "unauthorized_twice": Case(
        lambda s: (
            relogin(s),
            s.llu.fail_next(2, status=401, body=fixture_bytes("error-401-invalid-jwt.json"), path="/llu/connections/"),
        ),
        errors.LinkUpUnauthorized,
    ),
    "missing_header": Case(
        lambda s: s.llu.fail_next(
            1, status=400, body=fixture_bytes("error-400-required-header-missing.json"), path="/llu/connections/"
        ),
        errors.LinkUpMissingHeader,
    ),
    "patient_not_found": Case(
        lambda s: s.new_container(),
        errors.LinkUpPatientNotFound,
        healthy_first=False,
        env={"LINK_UP_CONNECTION": "00000000-0000-4000-8000-000000000000"},
    ),
    "no_connections": Case(lambda s: None, errors.LinkUpNoConnections, healthy_first=False),
    "rate_limited_1015": Case(lambda s: s.llu.rate_limit_html(1, retry_after=120), errors.LinkUpRateLimited),
    "blocked_cloudflare": Case(lambda s: s.llu.cloudflare_block(1), errors.LinkUpBlocked),
    "blocked_430_on_login": Case(lambda s: (relogin(s), s.llu.http_430_on_login(1)), errors.LinkUpBlocked),
    "maintenance": Case(lambda s: s.llu.set_maintenance(True), errors.LinkUpMaintenance),
    "server_error_echoing_secrets": Case(
        lambda s: s.llu.fail_next(1, status=502, body=llu_echo_page(s), content_type="text/html"),
        errors.LinkUpServerError,
    ),
    "html_200_echoing_secrets": Case(
        lambda s: s.llu.fail_next(1, status=200, body=llu_echo_page(s), content_type="text/html"),
        errors.LinkUpMalformedResponse,
    ),
    "graph_400_echoing_the_token": Case(
        lambda s: llu_echo_json(s, 400, "/llu/connections/", ticket_token(s)), errors.LinkUpMalformedResponse
    ),
    "graph_200_echoing_the_account_id": Case(
        lambda s: llu_echo_json(s, 200, "/llu/connections/", s.account.account_id), errors.LinkUpMalformedResponse
    ),
    "login_400_echoing_the_password": Case(
        lambda s: (relogin(s), llu_echo_json(s, 400, "/llu/auth/login", PASSWORD)), errors.LinkUpMalformedResponse
    ),
    "login_200_echoing_the_password": Case(
        lambda s: (relogin(s), llu_echo_json(s, 200, "/llu/auth/login", PASSWORD)), errors.LinkUpMalformedResponse
    ),
    "truncated_json": Case(lambda s: s.llu.truncated_json(1), errors.LinkUpMalformedResponse),
    "timeout": Case(lambda s: hang_past_the_deadline(s, lambda: s.llu.hang(1, HANG_S)), errors.LinkUpTimeout),
    "unreachable": Case(
        lambda s: (s.env.update(LINK_UP_API_URL="http://127.0.0.1:9/{region}"), s.new_container()),
        errors.LinkUpUnreachable,
    ),
}

NS_CASES: dict[str, Case] = {
    "ns_wrong_token": Case(ns_wrong_token, errors.NightscoutUnauthorized, extra_secrets=(WRONG_NS_TOKEN,)),
    "ns_401_echoing_secrets": Case(ns_fail(401), errors.NightscoutUnauthorized),
    "ns_500_echoing_secrets": Case(ns_fail(500), errors.NightscoutUnreachable),
    "ns_400_echoing_secrets": Case(ns_fail(400), errors.NightscoutRejected),
    "ns_403_echoing_secrets": Case(ns_fail(403), errors.NightscoutRejected),
    "ns_redirect_with_token": Case(
        lambda s: s.ns.fail_next(
            1,
            status=301,
            path=entries_path(s),
            headers={"Location": f"https://login.example.org/?token={s.ns_token}&user=x:y"},
        ),
        errors.NightscoutRejected,
    ),
    "ns_200_not_nightscout": Case(ns_fail(200), errors.NightscoutRejected),
    "ns_unreachable": Case(lambda s: s.ns.set_unreachable(True), errors.NightscoutUnreachable),
    "ns_timeout": Case(
        lambda s: hang_past_the_deadline(s, lambda: s.ns.hang_next(1, HANG_S)), errors.NightscoutUnreachable
    ),
}

OTHER_CASES: dict[str, Case] = {
    "secret_incomplete": Case(lambda s: s.put_secret(ns_url=" "), errors.SecretError, healthy_first=False),
    "ns_url_with_credentials": Case(
        lambda s: (s.put_secret(ns_url=f"https://bridge:{s.ns_token}@ns.example.org"), s.new_container()),
        errors.ConfigError,
    ),
    "ns_url_unparseable_with_token": Case(
        lambda s: (s.put_secret(ns_url=f"https://my site.example.org/?token={s.ns_token}"), s.new_container()),
        errors.ConfigError,
    ),
    "ns_url_plain_http": Case(
        lambda s: (s.put_secret(ns_url="http://ns.example.org"), s.new_container()), errors.ConfigError
    ),
}


# The timeout cases: a run deadline far shorter than the hang, set only for the runs after the healthy one,
# so no run depends on how fast this machine is (issue #10: a loaded machine missed a 0.8 s deadline).
SHORT_DEADLINE_S = 4.0
HANG_S = 30.0  # the simulators' longest hold; stop() releases it at once


def hang_past_the_deadline(stack: LocalStack, hang: Callable[[], None]) -> None:
    stack.deadline_s = SHORT_DEADLINE_S
    stack.new_container()  # the deadline is read when a container starts
    hang()


def drive(stack: LocalStack, case: Case) -> str:
    """Healthy start (optional), the failure, one more run; everything shown, as one text."""
    if case.error is not errors.LinkUpNoConnections:
        stack.llu.add_patient(EMAIL)
    stack.provision(**case.env)
    shown: list[str] = []
    if case.healthy_first:
        shown.append(json.dumps(stack.run()))
        stack.tick(300)
    case.setup(stack)
    with pytest.raises(case.error) as err:
        stack.run()
    shown += [str(err.value), repr(err.value), err.value.message]
    stack.tick(60)
    try:
        shown.append(json.dumps(stack.run()))  # often skipped by a breaker: its dict is shown too
    except errors.LinkupSyncError as again:
        shown += [str(again), repr(again)]
    sink = stack.log_sink
    assert isinstance(sink, io.StringIO)
    logs = sink.getvalue()
    assert err.value.message.splitlines()[0] in logs.replace('\\"', '"'), "the capture did not see the error"
    return logs + "\n".join(shown)


@pytest.mark.parametrize("name", sorted(LLU_CASES))
def test_no_secret_on_linkup_error_paths(stack: LocalStack, name: str) -> None:
    case = LLU_CASES[name]
    text = drive(stack, case)
    for value in secrets_of(stack, case.extra_secrets):
        assert value not in text, f"a secret of {len(value)} characters was shown"


@pytest.mark.parametrize("api_v3", [False, True], ids=["v1", "v3"])
@pytest.mark.parametrize("name", sorted(NS_CASES))
def test_no_secret_on_nightscout_error_paths(stack: LocalStack, name: str, api_v3: bool) -> None:
    case = NS_CASES[name]
    if api_v3:
        case = Case(
            case.setup, case.error, case.healthy_first, {**case.env, "NIGHTSCOUT_API_V3": "true"}, case.extra_secrets
        )
    text = drive(stack, case)
    forbidden = secrets_of(stack, case.extra_secrets)
    if api_v3:
        assert any(v.startswith("eyJ") for v in forbidden), "the v3 JWT is among the checked values"
    for value in forbidden:
        assert value not in text, f"a secret of {len(value)} characters was shown"


@pytest.mark.parametrize("name", sorted(OTHER_CASES))
def test_no_secret_on_configuration_error_paths(stack: LocalStack, name: str) -> None:
    case = OTHER_CASES[name]
    text = drive(stack, case)
    for value in secrets_of(stack, case.extra_secrets):
        assert value not in text, f"a secret of {len(value)} characters was shown"


def test_state_table_failure_shows_no_secret(stack: LocalStack) -> None:
    from botocore.exceptions import ClientError

    def throttle(model: Any = None, **_: Any) -> None:
        if model is not None and model.name == "UpdateItem":
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "x"}}, model.name)

    stack.aws_calls = throttle  # type: ignore[assignment]
    case = Case(lambda s: s.new_container(), errors.StateUnavailable, healthy_first=False)
    text = drive(stack, case)
    for value in secrets_of(stack):
        assert value not in text


# --- IAM: what the code uses is exactly what the role grants ---------------------------------------------


@pytest.fixture(scope="module")
def cfn() -> dict[str, Any]:
    return transformed_template()


def _roles(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: r["Properties"] for lid, r in cfn["Resources"].items() if r["Type"] == "AWS::IAM::Role"}


def test_only_lambda_may_assume_the_function_role_and_the_scheduler_may_only_invoke(cfn: dict[str, Any]) -> None:
    function_role = cfn["Resources"]["SyncFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]
    roles = _roles(cfn)
    assert set(roles) == {function_role, "SyncFunctionScheduleRole"}, "no other role in the stack"
    trusted = {lid: role["AssumeRolePolicyDocument"]["Statement"] for lid, role in roles.items()}
    assert trusted[function_role] == [
        {"Action": ["sts:AssumeRole"], "Effect": "Allow", "Principal": {"Service": ["lambda.amazonaws.com"]}}
    ]
    assert trusted["SyncFunctionScheduleRole"] == [
        {"Action": ["sts:AssumeRole"], "Effect": "Allow", "Principal": {"Service": ["scheduler.amazonaws.com"]}}
    ]
    assert schedule_role_statements(cfn, "SyncFunctionScheduleRole") == invoke_only("SyncFunction")


def test_no_resource_policy_opens_the_table_the_secret_or_the_function(cfn: dict[str, Any]) -> None:
    types = {r["Type"] for r in cfn["Resources"].values()}
    assert not types & OPENING_RESOURCE_TYPES
    table = cfn["Resources"]["StateTable"]["Properties"]
    assert "ResourcePolicy" not in table and "StreamSpecification" not in table
    secret = cfn["Resources"]["CredentialsSecret"]["Properties"]
    assert "KmsKeyId" not in secret  # the AWS-managed key: the role needs (and has) no kms permission


class UsedCalls:
    """botocore 'before-call': every AWS action the handler performs, as IAM names it, and what on."""

    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.tables: set[str] = set()
        self.secrets: set[str] = set()
        self.topics: set[str] = set()

    def __call__(self, model: Any = None, params: Any = None, **_: Any) -> None:
        if model is None:
            return
        self.actions.add(f"{model.service_model.endpoint_prefix}:{model.name}")
        body = params.get("body", {}) if isinstance(params, dict) else {}
        text = body.decode() if isinstance(body, bytes) else json.dumps(body)
        self.tables.update(re.findall(r'"TableName": ?"([^"]+)"', text))
        self.secrets.update(re.findall(r'"SecretId": ?"([^"]+)"', text))
        if isinstance(body, dict) and "TopicArn" in body:  # SNS speaks the query protocol
            self.topics.add(str(body["TopicArn"]))


def test_the_actions_and_resources_the_code_uses_are_exactly_the_granted_ones(
    stack: LocalStack, cfn: dict[str, Any]
) -> None:
    statements, _managed = function_role_statements(cfn)
    granted = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        if not a.startswith("logs:")
    }
    used = UsedCalls()
    stack.aws_calls = used  # type: ignore[assignment]
    stack.llu.add_patient(EMAIL)
    stack.provision()
    stack.run()  # login: lock, ticket, patient, ledger
    for _ in range(3):  # steady state, a new container, a revoked ticket, a back-off and its reset
        stack.tick(300)
        stack.run()
    stack.new_container()
    stack.llu.revoke_tokens()
    stack.tick(300)
    stack.run()
    stack.llu.server_error(1)
    stack.tick(300)
    with pytest.raises(errors.LinkUpServerError):
        stack.run()
    stack.tick(3600)
    stack.run()
    stack.put_secret(password="wrong")  # an incident: the bridge e-mails the alert topic
    stack.llu.revoke_tokens()
    stack.new_container()
    stack.tick(300)
    with pytest.raises(errors.LinkUpBadCredentials):
        stack.run()
    assert used.actions == granted
    assert used.tables == {stack.env["STATE_TABLE_NAME"]}
    assert used.secrets == {stack.env["CREDENTIALS_SECRET_ID"]}
    assert used.topics == {stack.env["ALERT_TOPIC_ARN"]}


# --- TLS -------------------------------------------------------------------------------------------------


def test_no_code_path_can_turn_certificate_checks_off() -> None:
    packages = (PACKAGE, PACKAGE.parents[3] / "cli" / "linkup_sync_cli")  # the runtime and the command line
    source = "\n".join(p.read_text(encoding="utf-8") for package in packages for p in package.rglob("*.py"))
    assert "def run_doctor" in source  # doctor's own requests are covered too
    for pattern in (
        "CERT_NONE",
        "verify=False",
        "assert_hostname",
        "check_hostname",
        "_create_unverified_context",
        'cert_reqs="CERT_OPTIONAL"',
        "ssl_context=",
        "PYTHONHTTPSVERIFY",
        "insecure",
    ):
        occurrences = [m.start() for m in re.finditer(re.escape(pattern), source)]
        if pattern == "ssl_context=":  # only make_pool's fallback, which is a verifying default context
            assert len(occurrences) <= 1 and "ssl.create_default_context()" in source
            continue
        assert occurrences == [], pattern
    assert re.findall(r"cert_reqs=\"([A-Z_]+)\"", source) == ["CERT_REQUIRED"]
    names = {f.name for f in fields(Settings)}
    assert not {n for n in names if re.search(r"tls|ssl|verify|cert|insecure", n)}
    setting_names = set(re.findall(r'env\.get\("([A-Z_0-9]+)"', (PACKAGE / "settings.py").read_text()))
    assert not {n for n in setting_names if re.search(r"TLS|SSL|VERIFY|CERT|INSECURE", n)}, setting_names


@dataclass
class TlsServer:
    """A TLS server on loopback with a self-signed certificate; counts bytes received after the handshake."""

    cert: Path
    key: Path
    port: int = 0
    handshakes_ok: int = 0
    handshakes_failed: int = 0
    received: bytes = b""

    def __post_init__(self) -> None:
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(self.cert, self.key)
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._socket.accept()
            except TimeoutError:
                continue
            conn.settimeout(20)  # generous: a loaded machine may be slow to send its handshake
            try:
                with self._context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes_ok += 1
                    self.received += tls.recv(65536)
                    tls.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                        b"Connection: close\r\n\r\n[]"
                    )
            except (ssl.SSLError, OSError):
                self.handshakes_failed += 1
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._socket.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost signed by itself: with `cryptography` if installed, else openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    try:
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        try:
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=localhost",
                    "-keyout",
                    str(key),
                    "-out",
                    str(cert),
                    "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.CalledProcessError):
            pytest.skip("neither the cryptography package nor openssl can make a test certificate")
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(private, hashes.SHA256())
    )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    cert, key = _self_signed(tmp_path)
    server = TlsServer(cert, key)
    try:
        yield server
    finally:
        server.close()


TLS_OFF_VARIABLES = {
    "PYTHONHTTPSVERIFY": "0",
    "CURL_CA_BUNDLE": "",
    "REQUESTS_CA_BUNDLE": "",
    "LINK_UP_VERIFY_TLS": "false",
    "NIGHTSCOUT_VERIFY_TLS": "false",
    "VERIFY_SSL": "false",
    "NODE_TLS_REJECT_UNAUTHORIZED": "0",
    "TLS_VERIFY": "0",
}


def test_the_pool_always_requires_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TLS_OFF_VARIABLES.items():
        monkeypatch.setenv(name, value)
    for kwargs in ({}, {"maxsize": 4}, {"num_pools": 1, "maxsize": 1}):
        pool = make_pool(**kwargs)
        assert pool.connection_pool_kw["cert_reqs"] == "CERT_REQUIRED"
        assert "assert_hostname" not in pool.connection_pool_kw
        context = pool.connection_pool_kw.get("ssl_context")
        assert context is None or (context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname)


def test_a_self_signed_certificate_is_refused_whatever_the_environment_says(
    tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"https://127.0.0.1:{tls_server.port}/"
    # control: the server works for a client that trusts its certificate
    trusting = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(tls_server.cert), retries=False)
    assert trusting.request("GET", url, timeout=3).status == 200
    assert tls_server.handshakes_ok == 1
    for name, value in TLS_OFF_VARIABLES.items():
        monkeypatch.setenv(name, value)
    received = tls_server.received
    with pytest.raises(TransportError) as err:
        send(
            make_pool(),
            "GET",
            url,
            headers={"api-secret": "x" * 40},
            body=None,
            timeout=urllib3.Timeout(connect=3, read=3),
        )
    assert err.value.kind == "tls"
    assert tls_server.received == received, "nothing may be sent over an unverified connection"


def test_the_adapters_refuse_a_self_signed_certificate_before_sending_a_secret(tls_server: TlsServer) -> None:
    base = f"https://127.0.0.1:{tls_server.port}"
    client = LinkUpClient(url_template=base + "/{region}")
    with pytest.raises(errors.LinkUpUnreachable) as llu_err:
        client.login(EMAIL, PASSWORD, "eu")
    assert "TLS" in str(llu_err.value)
    from linkup_sync.readings import Reading

    reading = Reading(epoch_ms=1_795_730_978_000, sgv=120, direction="Flat", source="current")
    with pytest.raises(errors.NightscoutUnreachable):
        NightscoutV1(base_url=base, token="bridge-0123456789abcdef").upload([reading])
    with pytest.raises(errors.NightscoutUnreachable):
        NightscoutV3(base_url=base, token="bridge-0123456789abcdef").upload([reading])
    for _ in range(400):  # the server thread notes the refused handshakes a moment later (up to 20 s)
        if tls_server.handshakes_failed >= 3:
            break
        threading.Event().wait(0.05)
    assert tls_server.handshakes_failed >= 3
    assert tls_server.received == b"" and tls_server.handshakes_ok == 0


# --- plain http only to loopback ------------------------------------------------------------------------

LOOPBACK = [
    "http://127.0.0.1:8080",
    "http://127.0.0.53",
    "http://localhost:1337",
    "http://LOCALHOST",
    "http://[::1]:8080",
    "https://example.org",
    "HTTPS://EXAMPLE.ORG",
]
NOT_LOOPBACK = [
    "http://example.org",
    "http://127.0.0.1.nip.io",
    "http://localhost.example.org",
    "http://0.0.0.0:8080",
    "http://10.0.0.1",
    "http://192.168.1.10",
    "http://169.254.169.254",
    "http://[::]:8080",
    "http://[fe80::1]",
    "ftp://127.0.0.1",
    "file:///etc/passwd",
    "//example.org",
]


@pytest.mark.parametrize("url", LOOPBACK)
def test_http_is_accepted_for_loopback_and_https_everywhere(url: str) -> None:
    check_url_scheme(url)
    settings = Settings.from_env({"LINK_UP_API_URL": url + "/{region}"}, need_aws=False)
    assert settings.api_url_template == url + "/{region}"
    LinkUpClient(url_template=url + "/{region}")
    assert normalize_nightscout_url(url).lower() == url.lower()
    NightscoutV1(base_url=url, token="bridge-0123456789abcdef")


@pytest.mark.parametrize("url", NOT_LOOPBACK)
def test_anything_else_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_url_scheme(url)
    with pytest.raises(errors.ConfigError) as config:
        Settings.from_env({"LINK_UP_API_URL": url + "/{region}"}, need_aws=False)
    assert "LINK_UP_API_URL" in str(config.value)
    with pytest.raises(ValueError):
        LinkUpClient(url_template=url + "/{region}")
    with pytest.raises(ValueError):
        normalize_nightscout_url(url)
    with pytest.raises(ValueError):
        NightscoutV1(base_url=url, token="bridge-0123456789abcdef")
    with pytest.raises(ValueError):
        NightscoutV3(base_url=url, token="bridge-0123456789abcdef")


def test_a_plain_http_nightscout_url_in_the_secret_stops_the_run_before_any_request(stack: LocalStack) -> None:
    stack.llu.add_patient(EMAIL)
    stack.provision()
    stack.put_secret(ns_url="http://ns.example.org")
    with pytest.raises(errors.ConfigError) as err:
        stack.run()
    assert "https://" in str(err.value)
    assert stack.ns.requests == []
