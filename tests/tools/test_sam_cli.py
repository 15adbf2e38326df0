"""The real sam CLI on a copy of the project: `make build`, `make package`, `sam validate` (issue #11).

Offline: `sam package` uploads to moto's S3 on 127.0.0.1 (AWS_ENDPOINT_URL, fake credentials), and
the CLI's weekly update check is marked as done so it never calls PyPI. `make test` provides the CLI
(the `sam` on PATH, else .venv-sam) and passes it in LINKUP_SYNC_SAM.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from tools.local_stack import local_aws_variables, moto_server, read_template

from tests.support.template import REPO_ROOT, load_template

APPLICATION = "AWS::ServerlessRepo::Application"
# What `sam build`, `sam package` and the Makefile read; nothing else of the repository is copied.
PROJECT_FILES = (
    "template.yaml",
    "hosted.yaml",
    "samconfig.toml",
    "Makefile",
    "LICENSE",
    "README.md",
    "functions",
    "layers",
)
TIMEOUT_S = 900  # generous: the machine may be busy; the commands take seconds


def _sam() -> Path:
    configured = os.environ.get("LINKUP_SYNC_SAM", "")
    if configured:
        found = (REPO_ROOT / configured) if "/" in configured else shutil.which(configured)
    else:
        own = REPO_ROOT / ".venv-sam" / "bin" / "sam"
        found = own if own.exists() else shutil.which("sam")
    if not found or not Path(found).exists():
        pytest.fail("no sam CLI: run `make sam-cli` (make test does it) or set LINKUP_SYNC_SAM")
    return Path(found).absolute()


@pytest.fixture(scope="module")
def sam() -> Path:
    return _sam()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files sam and the Makefile use, so parallel tests never share .aws-sam/."""
    root = tmp_path / "linkup-sync"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=ignore)
        else:
            shutil.copy2(source, root / name)
    return root


@pytest.fixture
def sam_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a sam run: no AWS profile, telemetry off, no update check (no PyPI call)."""
    app_dir = tmp_path / "sam-app"
    app_dir.mkdir()
    (app_dir / "metadata.json").write_text(json.dumps({"lastVersionCheck": time.time(), "telemetryEnabled": False}))
    env = {k: v for k, v in os.environ.items() if k != "SAM" and not k.startswith(("AWS_", "SAM_", "MAKE", "MFLAGS"))}
    env.update(
        {
            "SAM_CLI_TELEMETRY": "0",
            "__SAM_CLI_APP_DIR": str(app_dir),
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
            "PIP_NO_INDEX": "1",  # an install attempt fails at once instead of downloading
        }
    )
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)


def _output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _bin_dir(tmp_path: Path, **tools: str | Path) -> str:
    """A PATH of one folder holding only the named tools (symlinks): no python3.13, no docker."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name, target in tools.items():
        (folder / name).symlink_to(target)
    path = str(folder)
    assert shutil.which("python3.13", path=path) is None
    assert shutil.which("docker", path=path) is None
    assert shutil.which("python3", path=path) is None  # nothing could install aws-sam-cli either
    return path


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is not installed"
    return found


def _make() -> str:
    return _tool("make")


# --------------------------------------------------------------------------- Makefile: which sam


def test_the_aws_sam_cli_install_is_written_once() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert len(re.findall(r"pip install[^\n]*\$\(SAM_CLI_PACKAGE\)", makefile)) == 1
    assert "aws-sam-cli" not in re.sub(r"^SAM_CLI_PACKAGE \?= aws-sam-cli\S*$", "", makefile, flags=re.M)
    # Every sam command goes through $(SAM): the one on PATH, or .venv-sam's.
    assert not re.search(r"\$\(SAM_VENV\)/bin/sam (build|deploy|validate|package|publish|logs|local)", makefile)


def test_make_uses_the_sam_on_path_and_installs_none(
    project: Path, sam: Path, sam_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**sam_env, "PATH": _bin_dir(tmp_path, make=_make(), sam=sam)}
    planned = _run([_make(), "-n", "build", f"SAM_VENV={tmp_path / 'own-sam'}"], project, env)
    assert planned.returncode == 0, _output(planned)
    assert f"{tmp_path / 'bin' / 'sam'} build" in planned.stdout
    assert "pip install" not in planned.stdout


def test_make_installs_its_own_sam_only_when_none_is_on_path(
    project: Path, sam_env: dict[str, str], tmp_path: Path
) -> None:
    own = tmp_path / "own-sam"
    env = {**sam_env, "PATH": _bin_dir(tmp_path, make=_make())}
    planned = _run([_make(), "-n", "build", f"SAM_VENV={own}"], project, env)
    assert planned.returncode == 0, _output(planned)
    assert f"-m venv {own}" in planned.stdout
    assert f"{own}/bin/pip install --quiet aws-sam-cli" in planned.stdout
    assert f"{own}/bin/sam build" in planned.stdout


# --------------------------------------------------------------------------- make build (CloudShell-like)


def test_the_function_is_built_by_make_not_by_the_python_builder() -> None:
    """sam's Python builder needs a python (python3.13 first) on PATH even without requirements.txt."""
    function = load_template()["Resources"]["SyncFunction"]
    assert function["Metadata"]["BuildMethod"] == "makefile"
    makefile = (REPO_ROOT / function["Properties"]["CodeUri"] / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^build-SyncFunction:", makefile, re.M)
    assert "python" not in makefile.split("build-SyncFunction:", 1)[1]


def test_make_build_without_python313_and_docker_uses_the_sam_on_path(
    project: Path, sam: Path, sam_env: dict[str, str], tmp_path: Path
) -> None:
    """CloudShell: a sam on PATH, maybe an older Python, no Docker. Nothing may be installed."""
    own = tmp_path / "own-sam"
    env = {
        **sam_env,
        "PATH": _bin_dir(tmp_path, make=_make(), cp=_tool("cp"), mkdir=_tool("mkdir"), tar=_tool("tar"), sam=sam),
    }
    proc = _run([_make(), "build", f"SAM_VENV={own}"], project, env)
    assert proc.returncode == 0, _output(proc)
    assert "Build Succeeded" in proc.stdout
    assert not own.exists(), "make build installed a sam although one was on PATH"
    built = project / ".aws-sam" / "build"
    assert (built / "SyncFunction" / "app.py").read_bytes() == (REPO_ROOT / "functions/sync/app.py").read_bytes()
    template = read_template(built / "template.yaml")
    layer = template["Resources"]["LinkupSyncLayer"]["Properties"]["ContentUri"]
    assert ((built / layer).resolve() / "python" / "linkup_sync" / "__init__.py").is_file()
    assert (
        template["Metadata"][APPLICATION]["SemanticVersion"]
        == load_template()["Metadata"][APPLICATION]["SemanticVersion"]
    )


def test_make_build_without_python313_and_docker_uses_its_own_sam(
    project: Path, sam: Path, sam_env: dict[str, str], tmp_path: Path
) -> None:
    """No sam on PATH: the Makefile runs the one in SAM_VENV (here a ready one: no download)."""
    own = tmp_path / "own-sam"
    (own / "bin").mkdir(parents=True)
    (own / "bin" / "sam").symlink_to(sam)
    env = {**sam_env, "PATH": _bin_dir(tmp_path, make=_make(), cp=_tool("cp"), mkdir=_tool("mkdir"), tar=_tool("tar"))}
    proc = _run([_make(), "build", f"SAM_VENV={own}"], project, env)
    assert proc.returncode == 0, _output(proc)
    assert f"{own}/bin/sam build" in proc.stdout
    assert (project / ".aws-sam" / "build" / "SyncFunction" / "app.py").is_file()


def test_sam_build_of_the_hosted_stack_without_python313_and_docker(
    project: Path, sam: Path, sam_env: dict[str, str], tmp_path: Path
) -> None:
    """hosted.yaml builds the same way: both handlers and the shared layer, by make alone."""
    env = {
        **sam_env,
        "PATH": _bin_dir(tmp_path, make=_make(), cp=_tool("cp"), mkdir=_tool("mkdir"), tar=_tool("tar"), sam=sam),
    }
    proc = _run([str(sam), "build", "--template", "hosted.yaml"], project, env)
    assert proc.returncode == 0, _output(proc)
    built = project / ".aws-sam" / "build"
    for function_id, folder in (("DispatchFunction", "dispatch"), ("SyncWorkerFunction", "worker")):
        app = built / function_id / "app.py"
        assert app.read_bytes() == (REPO_ROOT / "functions" / folder / "app.py").read_bytes(), function_id
        assert sorted(p.name for p in (built / function_id).iterdir()) == ["app.py"], function_id
    template = read_template(built / "template.yaml")
    layer = template["Resources"]["LinkupSyncLayer"]["Properties"]["ContentUri"]
    layer_dir = (built / layer).resolve() / "python" / "linkup_sync"
    assert (layer_dir / "hosted" / "worker.py").is_file()
    assert not list(layer_dir.rglob("__pycache__"))


# --------------------------------------------------------------------------- sam validate


def test_make_validate_checks_both_templates(project: Path, sam: Path, sam_env: dict[str, str]) -> None:
    proc = _run([_make(), "validate", f"SAM={sam}"], project, sam_env)
    assert proc.returncode == 0, _output(proc)
    text = proc.stdout + proc.stderr
    for name in ("template.yaml", "hosted.yaml"):
        assert len(re.findall(rf"{name} is a valid SAM Template", text)) == 2, name  # validate and --lint


def test_sam_validate_and_lint_pass_with_the_application_metadata(
    project: Path, sam: Path, sam_env: dict[str, str]
) -> None:
    assert APPLICATION in read_template(project / "template.yaml")["Metadata"]
    for extra in ([], ["--lint"]):
        proc = _run([str(sam), "validate", *extra, "--region", "us-east-1"], project, sam_env)
        assert proc.returncode == 0, _output(proc)
        assert "is a valid SAM Template" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------- make package


@pytest.fixture
def local_s3() -> Iterator[tuple[str, Any]]:
    with moto_server() as endpoint:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield endpoint, client


def _s3_object(client: Any, bucket: str, uri: Any) -> bytes:
    assert isinstance(uri, str), uri
    match = re.fullmatch(rf"s3://{bucket}/(\S+)", uri)
    assert match, f"{uri} is not an object of s3://{bucket}"
    body: bytes = client.get_object(Bucket=bucket, Key=match.group(1))["Body"].read()
    return body


def test_make_package_uploads_the_artefacts_and_keeps_the_application_metadata(
    project: Path, sam: Path, sam_env: dict[str, str], local_s3: tuple[str, Any]
) -> None:
    endpoint, s3 = local_s3
    bucket = "linkup-sync-releases"
    s3.create_bucket(Bucket=bucket)
    env = {**sam_env, **local_aws_variables(endpoint), "AWS_ENDPOINT_URL_S3": endpoint}
    proc = _run([_make(), "package", f"PACKAGE_BUCKET={bucket}", f"SAM={sam}"], project, env)
    assert proc.returncode == 0, _output(proc)

    packaged = read_template(project / ".aws-sam" / "packaged.yaml")
    resources = packaged["Resources"]
    function_zip = _s3_object(s3, bucket, resources["SyncFunction"]["Properties"]["CodeUri"])
    assert zipfile.ZipFile(io.BytesIO(function_zip)).namelist() == ["app.py"]
    layer_zip = _s3_object(s3, bucket, resources["LinkupSyncLayer"]["Properties"]["ContentUri"])
    assert "python/linkup_sync/__init__.py" in zipfile.ZipFile(io.BytesIO(layer_zip)).namelist()

    source = load_template()["Metadata"][APPLICATION]
    application = packaged["Metadata"][APPLICATION]
    assert _s3_object(s3, bucket, application["LicenseUrl"]) == (project / "LICENSE").read_bytes()
    assert _s3_object(s3, bucket, application["ReadmeUrl"]) == (project / "README.md").read_bytes()
    unchanged = {k: v for k, v in source.items() if k not in ("LicenseUrl", "ReadmeUrl")}
    assert {k: application.get(k) for k in unchanged} == unchanged


def test_make_package_names_the_missing_bucket(project: Path, sam: Path, sam_env: dict[str, str]) -> None:
    proc = _run([_make(), "package", f"SAM={sam}"], project, sam_env)
    assert proc.returncode != 0
    assert "set PACKAGE_BUCKET=" in proc.stderr
    assert not (project / ".aws-sam" / "packaged.yaml").exists()
