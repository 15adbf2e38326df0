from __future__ import annotations

import json

import pytest

from linkup_sync.errors import ConfigError, SecretError
from linkup_sync.librelinkup.regions import DEFAULT_URL_TEMPLATE
from linkup_sync.settings import Settings, credentials_from_secret

BASE = {"STATE_TABLE_NAME": "t", "CREDENTIALS_SECRET_ID": "arn:secret"}


def test_defaults_match_nightscout_librelink_up() -> None:
    s = Settings.from_env(BASE)
    assert (s.region, s.version, s.api_v3, s.connection) == ("eu", "4.16.0", False, None)
    assert s.version_auto  # issue #10: unset means auto, starting from the built-in 4.16.0
    assert s.api_url_template == DEFAULT_URL_TEMPLATE


def test_explicit_version_is_pinned_and_auto_is_not() -> None:
    pinned = Settings.from_env({**BASE, "LINK_UP_VERSION": "4.17.0"})
    assert (pinned.version, pinned.version_auto) == ("4.17.0", False)
    auto = Settings.from_env({**BASE, "LINK_UP_VERSION": "auto"})
    assert (auto.version, auto.version_auto) == ("4.16.0", True)


def test_region_case_and_the_aliases_the_template_refuses() -> None:
    assert Settings.from_env({**BASE, "LINK_UP_REGION": "eu2"}).region == "eu2"
    assert Settings.from_env({**BASE, "LINK_UP_REGION": "US"}).region == "us"
    for alias in ("GB", "uk"):  # the template's LinkUpRegion refuses them, so the command line does too
        with pytest.raises(ConfigError, match="use EU2"):
            Settings.from_env({**BASE, "LINK_UP_REGION": alias})


def test_every_problem_is_listed_at_once() -> None:
    env = {
        "LINK_UP_REGION": "Mars",
        "LINK_UP_VERSION": "latest",
        "NIGHTSCOUT_API_V3": "maybe",
        "LINK_UP_API_URL": "http://evil.example.com/{region}",
        "LINK_UP_CONNECTION": "Pat Example",
    }
    with pytest.raises(ConfigError) as err:
        Settings.from_env(env)
    text = str(err.value)
    for fragment in (
        "LINK_UP_REGION 'Mars'",
        "LINK_UP_VERSION",
        "NIGHTSCOUT_API_V3",
        "http://",
        "LINK_UP_CONNECTION",
        "STATE_TABLE_NAME",
        "CREDENTIALS_SECRET_ID",
    ):
        assert fragment in text
    assert len(err.value.problems) == 7


def test_loopback_http_is_allowed_for_simulators() -> None:
    s = Settings.from_env({**BASE, "LINK_UP_API_URL": "http://127.0.0.1:8080/{region}/"})
    assert s.api_url_template == "http://127.0.0.1:8080/{region}"


def test_template_without_region_placeholder_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\{region\}"):
        Settings.from_env({**BASE, "LINK_UP_API_URL": "https://api-eu.libreview.io"})


def test_secret_missing_keys_are_named_without_values() -> None:
    with pytest.raises(SecretError) as err:
        credentials_from_secret(
            json.dumps({"LINK_UP_USERNAME": "a@b.c", "LINK_UP_PASSWORD": "hunter2hunter2", "NIGHTSCOUT_URL": ""}),
            version="v1",
            secret_id="arn:s",
        )
    text = str(err.value)
    assert "NIGHTSCOUT_URL in the secret is empty" in text
    assert "NIGHTSCOUT_API_TOKEN is missing" in text
    assert "aws secretsmanager put-secret-value --secret-id arn:s" in text
    assert "hunter2hunter2" not in text and "a@b.c" not in text


def test_secret_that_is_not_json() -> None:
    with pytest.raises(SecretError, match="not JSON"):
        credentials_from_secret("user:pass", version="v", secret_id=None)


def test_credentials_repr_hides_password_and_token() -> None:
    creds = credentials_from_secret(
        {
            "LINK_UP_USERNAME": "a@b.c",
            "LINK_UP_PASSWORD": "pw-secret-1",
            "NIGHTSCOUT_URL": "https://ns",
            "NIGHTSCOUT_API_TOKEN": "tok-secret-2",
        },
        version="v",
        secret_id=None,
    )
    assert "pw-secret-1" not in repr(creds) and "tok-secret-2" not in repr(creds)


def test_alert_settings_default_and_validation() -> None:
    s = Settings.from_env(BASE)
    assert (s.announce, s.alert_topic_arn, s.stale_after_minutes) == (True, None, 30)
    s = Settings.from_env(
        {**BASE, "NIGHTSCOUT_ANNOUNCE": "false", "ALERT_TOPIC_ARN": "arn:aws:sns:x", "STALE_AFTER_MINUTES": "45"}
    )
    assert (s.announce, s.alert_topic_arn, s.stale_after_minutes) == (False, "arn:aws:sns:x", 45)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, "STALE_AFTER_MINUTES": "5"})
    assert "STALE_AFTER_MINUTES" in err.value.message


def test_trend_arrows_is_derived_by_default_or_libre_and_listed_with_the_other_problems() -> None:
    """Issue 24: TREND_ARROWS, validated once with the other settings."""
    assert Settings.from_env(BASE).trend_arrows == "derived"
    assert Settings.from_env({**BASE, "TREND_ARROWS": " Libre "}).trend_arrows == "libre"
    assert Settings.from_env({**BASE, "TREND_ARROWS": ""}).trend_arrows == "derived"
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**BASE, "TREND_ARROWS": "double", "NIGHTSCOUT_API_V3": "maybe"})
    assert len(err.value.problems) == 2
    (problem,) = [p for p in err.value.problems if "TREND_ARROWS" in p]
    assert "derived" in problem and "libre" in problem and "'double'" in problem


def test_nightscout_device_name_as_nightscout_librelink_up_has_it() -> None:
    """Issue 23, finding 9: its NIGHTSCOUT_DEVICE_NAME is accepted, checked, and defaults to linkup-sync."""
    base = {"LINK_UP_REGION": "EU"}
    assert Settings.from_env(base, need_aws=False).device_name == "linkup-sync"
    named = Settings.from_env({**base, "NIGHTSCOUT_DEVICE_NAME": " nightscout-librelink-up "}, need_aws=False)
    assert named.device_name == "nightscout-librelink-up"
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**base, "NIGHTSCOUT_DEVICE_NAME": "x" * 65}, need_aws=False)
    assert "NIGHTSCOUT_DEVICE_NAME must be 1 to 64" in err.value.message


def test_the_template_allows_exactly_the_device_names_the_code_allows() -> None:
    import re

    from linkup_sync.settings import DEVICE_NAME_PATTERN
    from tests.support.template import load_template

    parameter = load_template()["Parameters"]["NightscoutDeviceName"]
    assert parameter["AllowedPattern"] == DEVICE_NAME_PATTERN and parameter["Default"] == "linkup-sync"
    assert re.match(DEVICE_NAME_PATTERN, parameter["Default"])


def test_the_hint_for_a_secret_of_several_people_is_not_make_secret() -> None:
    """Issue 23, finding 5: `make secret` writes one person; a TARGETS secret is changed with make setup."""
    from linkup_sync.settings import set_secret_hint

    assert "make secret" in set_secret_hint("s")
    several = set_secret_hint("s", targets=True)
    assert "make secret" not in several and "make setup" in several and "file://secret.json" in several
