"""Issue 21 at the operator's command: `accounts add` refuses Nightscout sites off the public internet, and
nothing any command prints carries a control character (moto server on 127.0.0.1, fake DNS).

The worker's own check, at connect time, is tests/integration/test_hosted_addresses.py; the address table
is tests/unit/test_addresses.py.
"""

from __future__ import annotations

import io
import json

import pytest

from linkup_sync.addresses import ALLOW_LOOPBACK_ENV
from linkup_sync.hosted.registry import account_id_for
from linkup_sync_cli import main as cli
from tests.fakes import FakeDns
from tests.integration.test_cli_accounts import Stack, flat, secret_values, stack
from tests.unit.test_addresses import FINDING_5

__all__ = ["stack"]  # the fixture, shared with test_cli_accounts.py

CONTROLS = [chr(c) for c in (*range(0, 9), *range(11, 32), *range(0x7F, 0xA0))] + ["\u202e", "\u2066"]
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m\b\u202e\x9b"  # no white space: a user name has none


def add_with(stack: Stack, raw: dict[str, object], env: dict[str, str]) -> tuple[int, str, str]:
    """`accounts add` with an environment of its own (main's env)."""
    stack.secrets.update(secret_values(raw))
    argv = ["accounts", "add", "--table", stack.table, "--key-id", stack.key_arn]
    code = cli.main(argv, env=env, clock=stack.clock, stdin=io.StringIO(json.dumps(raw)), resolve=stack.resolve)
    captured = stack.capsys.readouterr()
    stack.outputs.append(captured.out + captured.err)
    return code, captured.out, captured.err


@pytest.mark.parametrize(("url", "what"), FINDING_5)
def test_add_refuses_every_address_of_finding_5(stack: Stack, url: str, what: str) -> None:
    code, out, err = stack.add(flat(NIGHTSCOUT_URL=url))
    assert code == 2 and out == ""
    assert err.startswith("linkup-sync accounts add: The account cannot be added:")
    assert f"NIGHTSCOUT_URL is {what}: a hosted account may only use a Nightscout site on the public internet" in err
    assert "Fix: give the site's public https:// address" in err
    assert url.split("//")[1] not in err.replace(what, "")  # the value given is never echoed
    assert stack.items() == set()  # nothing stored


def test_add_refuses_a_name_that_resolves_inside(stack: Stack) -> None:
    stack.resolve = FakeDns({"fiona-ns.example.net": ["93.184.215.14", "169.254.169.254"]})
    code, out, err = stack.add(flat())
    assert code == 2 and out == "" and stack.items() == set()
    assert "NIGHTSCOUT_URL's host name resolves to 169.254.169.254, a link-local address" in err
    assert "fiona-ns.example.net" not in err


def test_add_refuses_a_name_that_does_not_resolve(stack: Stack) -> None:
    stack.resolve = FakeDns({})
    code, out, err = stack.add(flat())
    assert code == 2 and out == "" and stack.items() == set()
    assert "NIGHTSCOUT_URL's host name could not be resolved" in err and "check the address for typos" in err


def test_add_refuses_every_bad_site_of_a_targets_list_at_once(stack: Stack) -> None:
    stack.resolve = FakeDns({"anna.example.net": ["10.1.2.3"], "ben.example.net": ["93.184.215.14"]})
    entries = [
        ("anna.example.net", "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13"),
        ("ben.example.net", "0d3c6b7a-5e4f-4a1b-8c9d-7e6f5a4b3c2d"),
        ("[::ffff:10.0.0.1]", "5a4b3c2d-5e4f-4a1b-8c9d-7e6f0d3c6b7a"),
    ]
    raw = {
        "LINK_UP_USERNAME": "greg.guardian@example.invalid",
        "LINK_UP_PASSWORD": "greg-pass-0002",
        "TARGETS": [
            {
                "LINK_UP_CONNECTION": patient,
                "NIGHTSCOUT_URL": f"https://{host}",
                "NIGHTSCOUT_API_TOKEN": f"tok-{i}-0123",
            }
            for i, (host, patient) in enumerate(entries)
        ],
    }
    code, _, err = stack.add(raw)
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    assert code == 2 and len(problems) == 2, err
    assert "resolves to 10.1.2.3, a private network address" in problems[0] and problems[0].endswith("entry 1)")
    assert "is a private network address" in problems[1] and problems[1].endswith("(TARGETS entry 3)")


def test_the_tests_variable_lets_add_take_a_site_on_this_machine(stack: Stack) -> None:
    raw = flat(NIGHTSCOUT_URL="http://127.0.0.1:9001")
    code, _, err = add_with(stack, raw, {})
    assert code == 2 and "a loopback address" in err
    code, out, err = add_with(stack, raw, {ALLOW_LOOPBACK_ENV: "true"})
    assert code == 0 and out.strip() == account_id_for(str(raw["LINK_UP_USERNAME"])), err
    code, _, err = add_with(stack, flat(NIGHTSCOUT_URL="https://10.0.0.5"), {ALLOW_LOOPBACK_ENV: "true"})
    assert code == 2 and "a private network address" in err  # loopback only


def test_a_public_site_is_added(stack: Stack) -> None:
    code, out, err = stack.add(flat())
    assert code == 0 and out.strip() == account_id_for(str(flat()["LINK_UP_USERNAME"])), err


# --- nothing printed carries a control character ----------------------------------------------------


def test_add_list_and_show_print_no_control_character_of_a_user_name(stack: Stack) -> None:
    username = f"{ESCAPES}fiona@example.inv{ESCAPES}alid"
    site = {"NIGHTSCOUT_URL": "https://fiona-ns.example.net", "NIGHTSCOUT_API_TOKEN": "token-of-fiona-0123456789"}
    code, out, err = stack.add(flat(email=username, **site))
    assert code == 0, err
    account_id = out.strip()
    printed = [out + err]
    for args in (["list"], ["show", account_id], ["list", "--json"], ["show", account_id, "--json"]):
        code, out, err = stack.run(*args)
        assert code == 0, err
        printed.append(out + err)
    for text in printed:
        assert not [c for c in CONTROLS if c in text], repr(text)
    assert "***@e***.inv]0;owned[2j[31malid, 1 person" in printed[0]  # what is printable of it is still shown
    assert json.loads(printed[3].splitlines()[0])["id"] == account_id


def test_argparse_messages_go_through_the_same_filter(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main([f"{ESCAPES}doctor"])
    err = capsys.readouterr().err
    assert "invalid choice" in err and not [c for c in CONTROLS if c in err]
