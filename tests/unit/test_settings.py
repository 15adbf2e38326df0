from __future__ import annotations

import pytest

from linkup_sync.errors import ConfigError
from linkup_sync.librelinkup.regions import DEFAULT_URL_TEMPLATE
from linkup_sync.settings import Settings

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
