"""Deploying from a browser: Serverless Application Repository metadata, the console form, and the
outputs that let a person fill in the secret without a terminal (issue #11).

Offline: the template is read as YAML; the sam CLI checks live in tests/tools/test_sam_cli.py.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import pytest

import linkup_sync
import linkup_sync.secret_format
from tests.support.template import REPO_ROOT, SECRET_ID, load_template

APPLICATION = "AWS::ServerlessRepo::Application"
# The keys `make secret` (tools/secret.py) writes and settings.py reads.
SECRET_KEYS = ["LINK_UP_USERNAME", "LINK_UP_PASSWORD", "NIGHTSCOUT_URL", "NIGHTSCOUT_API_TOKEN"]
# Limits of the Serverless Application Repository (CreateApplication API).
NAME = re.compile(r"^[a-zA-Z0-9\-]{1,140}$")
AUTHOR = re.compile(r"^[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?$")
LABEL = re.compile(r"^[a-zA-Z0-9+\-_:/@]{1,127}$")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def application(template: dict[str, Any]) -> dict[str, Any]:
    metadata = template.get("Metadata", {})
    assert APPLICATION in metadata, f"template.yaml has no Metadata: {APPLICATION}"
    return dict(metadata[APPLICATION])


@pytest.fixture(scope="module")
def readme() -> str:
    return (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def _page(name: str) -> str:
    """A page of the documentation site (docs/); the deploy texts moved there from the README (issue 22)."""
    return (REPO_ROOT / "docs" / name).read_text(encoding="utf-8")


def _section(text: str, heading: str) -> str:
    """The text of one `## heading` section of a page (up to the next ## heading)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section '## {heading}'"
    return match.group(1)


# --------------------------------------------------------------------------- application metadata


def test_application_metadata_has_every_field(application: dict[str, Any]) -> None:
    required = {
        "Name",
        "Description",
        "Author",
        "SpdxLicenseId",
        "LicenseUrl",
        "ReadmeUrl",
        "Labels",
        "HomePageUrl",
        "SemanticVersion",
        "SourceCodeUrl",
    }
    assert required <= set(application), f"missing: {sorted(required - set(application))}"
    # Intrinsic functions are not allowed in this metadata: every value is plain text.
    for key, value in application.items():
        values = value if isinstance(value, list) else [value]
        assert all(isinstance(v, str) and v.strip() for v in values), f"{key} must be plain text: {value!r}"


def test_application_metadata_respects_the_repository_limits(application: dict[str, Any]) -> None:
    assert NAME.match(application["Name"])
    assert 1 <= len(application["Description"]) <= 256
    assert AUTHOR.match(application["Author"]) and len(application["Author"]) <= 127
    assert 1 <= len(application["Labels"]) <= 10
    for label in application["Labels"]:
        assert LABEL.match(label), label
    assert SEMVER.match(application["SemanticVersion"])
    for key in ("HomePageUrl", "SourceCodeUrl"):
        assert re.match(r"^https://[^\s]+$", application[key]), key


def test_license_and_readme_files_exist(application: dict[str, Any]) -> None:
    for key in ("LicenseUrl", "ReadmeUrl"):
        path = REPO_ROOT / application[key]
        assert path.is_file(), f"{key}: {application[key]} does not exist in the repository"
        # The Serverless Application Repository accepts at most 5 MB each.
        assert 0 < path.stat().st_size <= 5 * 1024 * 1024


def test_license_is_the_one_the_metadata_and_pyproject_name(application: dict[str, Any]) -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared = pyproject["project"]["license"]
    declared_id = declared if isinstance(declared, str) else declared.get("text")
    assert application["SpdxLicenseId"] == declared_id == "MIT"
    text = (REPO_ROOT / application["LicenseUrl"]).read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def _package_versions() -> set[str]:
    """Every place the package version is written: pyproject (static or dynamic) and linkup_sync."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = pyproject["project"]
    versions = {linkup_sync.__version__}
    if "version" in project:
        versions.add(project["version"])
    else:
        assert "version" in project.get("dynamic", []), "pyproject.toml names no version"
    return versions


def test_semantic_version_is_the_package_version(application: dict[str, Any]) -> None:
    versions = _package_versions()
    assert len(versions) == 1, f"the package versions disagree: {sorted(versions)}"
    assert application["SemanticVersion"] == versions.pop()


def test_source_code_url_is_the_repository_the_readme_clones(application: dict[str, Any], readme: str) -> None:
    clones = re.findall(r"git clone (\S+)", readme + _page("setup.md"))
    assert clones, "README shows no git clone command"
    for url in clones:
        assert url.removesuffix(".git") == application["SourceCodeUrl"]


# --------------------------------------------------------------------------- the console's deploy form


def test_every_form_field_has_a_description_a_default_and_a_label(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    interface = template["Metadata"]["AWS::CloudFormation::Interface"]
    grouped = [name for group in interface["ParameterGroups"] for name in group["Parameters"]]
    assert sorted(grouped) == sorted(parameters), "each parameter in exactly one group of the form"
    for name, parameter in parameters.items():
        assert parameter.get("Description", "").strip(), f"{name} has no description"
        assert "Default" in parameter, f"{name} has no default: the console form would demand a value"
        if "AllowedValues" in parameter:
            assert parameter["Default"] in parameter["AllowedValues"], name
        if "AllowedPattern" in parameter:
            assert re.fullmatch(parameter["AllowedPattern"], str(parameter["Default"])), name
        assert interface["ParameterLabels"][name]["default"].strip(), f"{name} has no label"


def test_nothing_secret_is_a_parameter(template: dict[str, Any]) -> None:
    secretish = re.compile(r"password|token|secret|username|credential|api.?key", re.I)
    for name, parameter in template["Parameters"].items():
        assert not parameter.get("NoEcho"), f"{name}: a NoEcho parameter means a secret is asked for"
        assert not secretish.search(name), f"{name} looks like a credential: credentials go in the secret"
    # The credentials are nowhere in the environment either: only the secret's id is.
    variables = template["Resources"]["SyncFunction"]["Properties"]["Environment"]["Variables"]
    assert not set(SECRET_KEYS) & set(variables)


# --------------------------------------------------------------------------- outputs for a console deploy


def test_outputs_link_to_the_secret_in_the_secrets_manager_console(template: dict[str, Any]) -> None:
    output = template["Outputs"]["CredentialsSecretConsoleUrl"]
    assert output["Value"] == {
        "Fn::Sub": "https://${AWS::Region}.console.aws.amazon.com/secretsmanager/secret"
        "?name=${CredentialsSecret}&region=${AWS::Region}"
    }
    assert SECRET_ID in template["Resources"]
    for step in ("Retrieve secret value", "Edit", "Plaintext"):
        assert step in output["Description"]


def test_outputs_show_the_json_to_paste(template: dict[str, Any]) -> None:
    output = template["Outputs"]["SecretJsonShape"]
    shape = json.loads(output["Value"])
    assert list(shape) == SECRET_KEYS
    assert all(isinstance(v, str) and v for v in shape.values())
    assert shape["NIGHTSCOUT_URL"].startswith("https://")
    # The output is what `make secret` (tools/secret.py) writes: the function's keys, in the same order.
    assert list(shape) == list(linkup_sync.secret_format.SECRET_KEYS)  # what tools/secret.py stores


# --------------------------------------------------------------------------- README


def test_readme_walks_through_the_console_deploy_and_the_secret() -> None:
    section = _section(_page("setup.md"), "Deploy from the AWS Serverless Application Repository")
    for text in (
        "CredentialsSecretConsoleUrl",
        "SecretJsonShape",
        "Retrieve secret value",
        "Edit",
        "Plaintext",
        "CAPABILITY_IAM",
    ):
        assert text in section, text
    for key in SECRET_KEYS:
        assert key in section, key


def test_readme_cloudshell_section() -> None:
    section = _section(_page("setup.md"), "Deploy from your browser with AWS CloudShell")
    for command in ("git clone ", "make deploy", "make secret", "linkup-sync doctor"):
        assert command in section, command
    assert "Docker" in section
    assert "python3.13" in section


def test_readme_development_section_documents_package_and_publish() -> None:
    section = _section(_page("contributing.md"), "Make targets") + _section(_page("contributing.md"), "Releasing")
    assert "make package PACKAGE_BUCKET=" in section
    assert "make publish" in section
    assert "sam publish" in section
