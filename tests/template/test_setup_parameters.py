"""`linkup-sync setup` deploys only the answers that differ from the template's defaults: its copy of
the defaults, and of which setting comes from which parameter, must be the template's (issue 23)."""

from __future__ import annotations

from linkup_sync_cli.setup_deploy import PARAMETER_DEFAULTS, SETTING_PARAMETERS, given_overrides, override_args
from tests.support.template import FUNCTION_ID, load_template


def test_the_defaults_are_the_templates() -> None:
    parameters = load_template()["Parameters"]
    assert {name: str(spec.get("Default", "")) for name, spec in parameters.items()} == PARAMETER_DEFAULTS


def test_the_settings_come_from_the_templates_parameters() -> None:
    template = load_template()
    variables = template["Resources"][FUNCTION_ID]["Properties"]["Environment"]["Variables"]
    wired = {
        name: value["Ref"]
        for name, value in variables.items()
        if isinstance(value, dict) and value.get("Ref") in template["Parameters"]
    }
    del wired["LINK_UP_CONNECTION"]  # setup puts the people into the secret, never into a parameter
    assert wired == SETTING_PARAMETERS


def test_only_answers_that_differ_from_the_defaults_are_overrides() -> None:
    env = {"LINK_UP_REGION": "EU", "ScheduleRate": "10 minutes", "NIGHTSCOUT_DEVICE_NAME": "xdrip", "PATH": "/bin"}
    overrides = given_overrides(env)
    assert overrides == {"ScheduleRate": "10 minutes", "NightscoutDeviceName": "xdrip"}
    assert override_args(overrides) == ["NightscoutDeviceName=xdrip", 'ScheduleRate="10 minutes"']
