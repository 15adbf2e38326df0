"""One configuration pattern (issue 25): config.EnvReader, the settings classes of the three handlers and
the command line that read through it, and a structure check that nothing else reads the environment.

Every entry point, given several wrong variables at once, raises (or prints) one ConfigError that names
every one of them with its cause and fix.
"""

from __future__ import annotations

import ast
import io
import json
import uuid
from pathlib import Path

import pytest
from tools.local_stack import load_function
from tools.run_handler import LocalContext

from linkup_sync.config import EnvReader
from linkup_sync.errors import ConfigError
from linkup_sync.hosted.settings import DispatcherSettings, WorkerSettings
from linkup_sync_cli.main import main

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "layers" / "linkup_sync" / "python" / "linkup_sync"
CLI = ROOT / "cli" / "linkup_sync_cli"
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))


# --- the reader ------------------------------------------------------------------------------------


def test_each_getter_records_its_problem_and_returns_the_default_so_the_others_are_read() -> None:
    read = EnvReader(
        {
            "FLAG": "maybe",
            "COUNT": "9",
            "MODE": " Loud ",
            "NAME": "x y",
            "NEEDED": "  ",
        },
        heading="The test is not configured",
    )
    assert read.flag("FLAG", default=True) is True
    assert read.whole_number("COUNT", 30, 10, 60, unit="minutes") == 30
    assert read.choice("MODE", ("quiet", "soft"), "quiet", explain="quiet or soft") == "quiet"
    assert read.matching("NAME", r"^\w+$", "n", explain="one word") == "n"
    assert read.required("NEEDED", "the stack sets it.") == ""
    assert read.required("ABSENT", "the stack sets it.") == ""
    assert read.problems == [
        "FLAG must be true or false, not 'maybe'.",
        "COUNT must be a whole number of minutes from 10 to 60, not '9'.",
        "MODE must be quiet or soft, not ' Loud '.",  # quotes what the person wrote
        "NAME must be one word, not 'x y'.",
        "NEEDED is not set: the stack sets it.",
        "ABSENT is not set: the stack sets it.",
    ]
    with pytest.raises(ConfigError) as caught:
        read.done()
    assert caught.value.problems == read.problems
    assert caught.value.message.startswith("The test is not configured:\n  - FLAG must be")


def test_good_values_pass_and_done_is_silent() -> None:
    read = EnvReader({"FLAG": " Yes ", "OFF": "", "COUNT": " 45 ", "MODE": " Soft ", "NAME": " word ", "NEEDED": " v "})
    assert (read.flag("FLAG"), read.flag("OFF", default=True), read.flag("UNSET", default=True)) == (True, False, True)
    assert read.whole_number("COUNT", 30, 10, 60, unit="minutes") == 45
    assert read.whole_number("UNSET", 30, 10, 60, unit="minutes") == 30
    assert read.choice("MODE", ("quiet", "soft"), "quiet", explain="") == "soft"
    assert read.matching("NAME", r"^\w+$", "n", explain="") == "word"
    assert (read.required("NEEDED", ""), read.optional("UNSET"), read.text("UNSET", "d")) == ("v", None, "d")
    assert read.raw("NEEDED") == " v " and read.raw("UNSET", "EU") == "EU"
    read.done()
    assert read.problems == []


def test_a_check_that_raises_value_error_becomes_a_problem() -> None:
    def region(text: str) -> str:
        if text != "eu":
            raise ValueError(f"REGION '{text}' is not a region; use eu.")
        return text

    read = EnvReader({})
    assert read.checked("mars", region, "eu") == "eu" and read.checked("eu", region, "x") == "eu"
    assert read.problems == ["REGION 'mars' is not a region; use eu."]


# --- every entry point lists every problem at once -----------------------------------------------------

BAD_RUN_SETTINGS = {  # wrong for every run, wherever it runs
    "LINK_UP_REGION": "Mars",
    "STALE_AFTER_MINUTES": "5",
    "NIGHTSCOUT_ANNOUNCE": "perhaps",
}


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_sync_handler_names_every_wrong_variable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STATE_TABLE_NAME", "CREDENTIALS_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in BAD_RUN_SETTINGS.items():
        monkeypatch.setenv(name, value)
    app = load_function("sync", f"sync_app_{uuid.uuid4().hex}")
    with pytest.raises(ConfigError) as caught:
        app.handler({"scheduled_time": "2027-01-15T08:00:00Z"}, LocalContext())
    named = [p.split(" ")[0] for p in caught.value.problems]
    assert named == [
        "LINK_UP_REGION",
        "NIGHTSCOUT_ANNOUNCE",
        "STALE_AFTER_MINUTES",
        "STATE_TABLE_NAME",
        "CREDENTIALS_SECRET_ID",
    ]


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_the_worker_handler_names_the_missing_outputs_and_wrong_stack_settings_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stack's own settings are checked once, at the start, with the missing outputs; not later, in
    each account's run."""
    monkeypatch.delenv("STATE_TABLE_NAME", raising=False)
    monkeypatch.setenv("CREDENTIALS_KEY_ARN", " ")
    monkeypatch.setenv("STALE_AFTER_MINUTES", "5")
    monkeypatch.setenv("LINK_UP_AUTO_ACCEPT_TERMS", "maybe")
    monkeypatch.setenv("LINK_UP_API_URL", "https://api.example.com")  # no {region}
    app = load_function("worker", f"worker_app_{uuid.uuid4().hex}")
    with pytest.raises(ConfigError) as caught:
        app.handler({"Records": []}, LocalContext())
    named = [p.split(" ")[0] for p in caught.value.problems]
    assert named == [
        "STATE_TABLE_NAME",
        "CREDENTIALS_KEY_ARN",
        "LINK_UP_AUTO_ACCEPT_TERMS",
        "STALE_AFTER_MINUTES",
        "LINK_UP_API_URL",
    ]
    assert caught.value.message.startswith("The hosted worker is not configured:")


def test_the_worker_checks_only_the_stack_settings_not_those_of_an_account() -> None:
    """LINK_UP_REGION is an account's setting: the stack's environment does not choose it, so a stray one
    is not the worker's problem (each account's run reads its own)."""
    env = {"STATE_TABLE_NAME": "t", "CREDENTIALS_KEY_ARN": "arn:k", "LINK_UP_REGION": "Mars"}
    assert WorkerSettings.from_env(env) == WorkerSettings(table_name="t", key_arn="arn:k")


def test_the_dispatcher_settings_name_both_variables_with_their_fix() -> None:
    """The handler's own test (test_hosted_handlers) runs it through functions/dispatch/app.py."""
    with pytest.raises(ConfigError) as caught:
        DispatcherSettings.from_env({"SYNC_QUEUE_URL": "  "})
    assert caught.value.problems == [
        "STATE_TABLE_NAME is not set: hosted.yaml sets it; redeploy the stack.",
        "SYNC_QUEUE_URL is not set: hosted.yaml sets it; redeploy the stack.",
    ]
    good = DispatcherSettings.from_env({"STATE_TABLE_NAME": " t ", "SYNC_QUEUE_URL": "https://q"})
    assert good == DispatcherSettings(table_name="t", queue_url="https://q")


def test_the_command_line_prints_every_wrong_variable_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr("sys.stderr", err)
    env = {**BAD_RUN_SETTINGS, "TREND_ARROWS": "double"}
    code = main(["sync", "--once", "--json"], env=env, clock=lambda: 1.8e9)
    assert code == 2
    summary = json.loads(out.getvalue().strip().splitlines()[-1])
    assert summary["error"] == "config" and summary["needs_person"] is True
    for name in (*BAD_RUN_SETTINGS, "TREND_ARROWS"):
        assert f"  - {name}" in summary["message"], name
    # The command line needs no table and no secret name.
    assert "STATE_TABLE_NAME" not in summary["message"] and "CREDENTIALS_SECRET_ID" not in summary["message"]


# --- nothing else reads the environment --------------------------------------------------------------

# Reads of os.environ that are not linkup-sync's configuration, each with why it may stay where it is.
NOT_CONFIGURATION = {
    # AWS_REGION / AWS_DEFAULT_REGION: the AWS SDK's own variables (the Lambda runtime sets them), read
    # like boto3 reads them to pick the clients' region; no setting of ours.
    "linkup_sync.aws": "the AWS SDK's region variables",
    # POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE: Powertools' own variables, read before its
    # Logger and Metrics exist; the templates set them for Powertools, not for linkup-sync.
    "linkup_sync.observability": "Powertools' own variables",
    # The command line's entry point takes the process environment once and hands it, whole, to every
    # command (which read their settings with Settings.from_env); `main(env=...)` replaces it in tests.
    "linkup_sync_cli.main": "the command line hands the environment on",
}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in (RUNTIME, CLI):
        for path in sorted(package.rglob("*.py")):
            parts = list(path.relative_to(package.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    for path in HANDLERS:
        found[f"functions.{path.parent.name}.app"] = path
    return found


def _is_os_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_name(node.value, "os")


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _is_os_getenv(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in ("getenv", "getenvb") and _is_name(node.value, "os")


def _environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read the process environment: os.environ (except handed whole to a from_env, the way a
    handler gives its settings class the environment), os.getenv, `from os import environ/getenv`."""
    handed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_env":
            handed |= {id(arg) for arg in node.args if _is_os_environ(arg)}
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (
            (_is_os_environ(node) and id(node) not in handed) or _is_os_getenv(node)
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            lines += [node.lineno for alias in node.names if alias.name in ("environ", "getenv", "environb")]
    return sorted(lines)


def test_the_detector_sees_every_way_of_reading_the_environment() -> None:
    cases = {
        "os.environ['STATE_TABLE_NAME']": 1,
        "os.environ.get('X', '')": 1,
        "env = os.environ if e is None else e": 1,
        "os.getenv('X')": 1,
        "from os import environ": 1,
        "Settings.from_env(os.environ)": 0,  # the handlers' way: the settings class reads it
        "Settings.from_env(dict(os.environ))": 1,
    }
    found = {code: len(_environment_reads(ast.parse(code))) for code in cases}
    assert found == cases


def test_only_the_settings_classes_read_the_configuration_from_the_environment() -> None:
    reads = {
        name: lines
        for name, path in _modules().items()
        if (lines := _environment_reads(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert {name: lines for name, lines in reads.items() if name not in NOT_CONFIGURATION} == {}
    # The list holds no stale entry: each still reads what its reason says.
    assert sorted(reads) == sorted(NOT_CONFIGURATION)


@pytest.mark.parametrize("path", HANDLERS, ids=lambda p: p.parent.name)
def test_each_handler_hands_the_environment_to_a_settings_class(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    calls = [
        node.func.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "from_env"
        and [_is_os_environ(arg) for arg in node.args] == [True]
    ]
    assert len(calls) == 1, f"{path} builds its dependencies with one from_env(os.environ)"


def test_the_settings_classes_read_through_one_reader() -> None:
    """Settings, DispatcherSettings and WorkerSettings each build an EnvReader and end with its done()."""
    places = {
        RUNTIME / "settings.py": ["Settings"],
        RUNTIME / "hosted" / "settings.py": ["DispatcherSettings", "WorkerSettings"],
    }
    for path, classes in places.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ClassDef) and node.name in classes):
                continue
            (from_env,) = [f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "from_env"]
            called = {
                sub.func.id if isinstance(sub.func, ast.Name) else getattr(sub.func, "attr", "")
                for sub in ast.walk(from_env)
                if isinstance(sub, ast.Call)
            }
            assert {"EnvReader", "done"} <= called, f"{node.name}.from_env"
            classes = [c for c in classes if c != node.name]
        assert classes == [], f"{path} lacks {classes}"


SETTINGS_CLASSES = ("Settings", "DispatcherSettings", "WorkerSettings")


def test_settings_are_only_made_by_from_env() -> None:
    """No handler, layer or command-line module builds a settings object by hand (which would skip the
    checks): each comes from its class's from_env."""
    built = [
        f"{name}:{node.lineno}"
        for name, path in _modules().items()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SETTINGS_CLASSES
    ]
    assert built == []


def test_the_command_line_reads_its_settings_with_the_runs_settings_class() -> None:
    """doctor, sync --once, import-csv and setup validate the settings with Settings.from_env, as the
    function does (the command line only passes need_aws=False: no table, no secret name)."""
    users = [
        path.stem
        for path in CLI.glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "from_env"
        and _is_name(node.func.value, "Settings")
    ]
    assert len(users) >= 4, users
