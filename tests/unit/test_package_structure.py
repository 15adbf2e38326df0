"""The shape of the two packages (issue 12): the Lambda layer ships only what runs in Lambda, the
command line depends on the runtime and never the reverse, there is no import cycle (issue 25: not even
through imports made for type checking), shipped code knows nothing of the repository, and logic that
was repeated lives in one place. Issue 25 adds: every interface in ports.py, optional capabilities as
named protocols rather than getattr probes, nothing in-memory in the layer, no layer module over 400
lines.

Static checks over the source (ast), plus the layer's real build (its Makefile), so they hold for
code paths no test happens to run.
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "linkup_sync"
RUNTIME = LAYER / "python" / "linkup_sync"
CLI = ROOT / "cli" / "linkup_sync_cli"
HANDLER = ROOT / "functions" / "sync" / "app.py"


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of a package (a package is its __init__)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = {**_modules(RUNTIME), **_modules(CLI)}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, type_checking: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import at module level or inside a function; those under TYPE_CHECKING only if asked."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node) and not type_checking:
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _imported(module: str, path: Path, *, type_checking: bool = True) -> set[str]:
    """The modules `module` imports, resolved (relative imports included, `from pkg import submodule` too)."""
    is_package = path.name == "__init__.py"
    names: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8")), type_checking=type_checking):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        if node.level:
            base = module.split(".")
            base = base[: len(base) - node.level + (1 if is_package else 0)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        names.add(target)
        names.update(f"{target}.{alias.name}" for alias in node.names if f"{target}.{alias.name}" in MODULES)
    return names


def _graph(*, type_checking: bool = True) -> dict[str, set[str]]:
    """Module -> the package modules it imports, those made only for type checking included unless
    `type_checking` is False: mypy follows them, and a cycle through them is a cycle of concerns. An
    import of its own parent package (`from . import parsing`) is no edge: Python imports every parent
    package before the module itself."""
    return {
        name: {
            m
            for m in _imported(name, path, type_checking=type_checking)
            if m in MODULES and not (name + ".").startswith(m + ".")
        }
        for name, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once (depth-first search; a back edge closes a cycle)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _shipped() -> dict[str, Path]:
    return {**_modules(RUNTIME), "app": HANDLER}


# --- one-way dependencies, no cycles -----------------------------------------------------------------


def test_the_graph_sees_the_command_lines_imports() -> None:
    """The checks below are only worth something if the graph finds real edges, lazy ones included."""
    graph = _graph()
    assert "linkup_sync_cli.doctor" in graph["linkup_sync_cli.main"]
    assert "linkup_sync.runtime" in graph["linkup_sync_cli.sync_command"]  # imported inside cmd_sync
    assert "linkup_sync.errors" in graph["linkup_sync.sync"]
    assert "linkup_sync.librelinkup.parsing" in graph["linkup_sync.librelinkup.client"]  # from . import parsing
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    # imports made for type checking only are edges too (errors/base.py names RunReport under TYPE_CHECKING)
    assert "linkup_sync.report" in graph["linkup_sync.errors.base"]
    assert "linkup_sync.report" not in _graph(type_checking=False)["linkup_sync.errors.base"]


def test_no_import_cycle_in_either_package() -> None:
    assert _cycles(_graph()) == []


def test_the_runtime_never_imports_the_command_line() -> None:
    graph = _graph()
    backwards = {
        name: sorted(m for m in imports if m.startswith("linkup_sync_cli"))
        for name, imports in graph.items()
        if name.startswith("linkup_sync.")
    }
    assert not {k: v for k, v in backwards.items() if v}
    for name, path in _shipped().items():  # nor by name (importlib, a string)
        assert "linkup_sync_cli" not in path.read_text(encoding="utf-8"), name


def test_the_command_line_package_is_outside_the_layer_source() -> None:
    assert not (RUNTIME / "cli.py").exists() and not (RUNTIME / "doctor.py").exists()
    assert not (RUNTIME / "__main__.py").exists()  # it would have to import the command line
    assert (CLI / "main.py").is_file() and (CLI / "doctor.py").is_file()


# --- the built layer -------------------------------------------------------------------------------


def test_the_built_layer_holds_no_command_line(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    subprocess.run(
        ["make", "--no-print-directory", "-C", str(LAYER), "build-LinkupSyncLayer", f"ARTIFACTS_DIR={artifacts}"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    built = sorted(p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*.py"))
    assert "python/linkup_sync/sync.py" in built and "python/linkup_sync/runtime.py" in built
    assert [p for p in built if not p.startswith("python/linkup_sync/")] == []
    names = {Path(p).name for p in built}
    assert not names & {"cli.py", "doctor.py", "__main__.py"}
    cli_modules = {p.stem for p in CLI.glob("*.py")} - {"__init__"}
    assert not [p for p in built if Path(p).stem in cli_modules - {"__main__"}], "a command-line module is shipped"
    for relative in built:
        tree = ast.parse((artifacts / relative).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.split(".")[0] == "linkup_sync_cli"], relative
            elif isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "linkup_sync_cli", relative


# --- shipped code does not know the repository --------------------------------------------------------


@pytest.mark.parametrize("name", sorted(_shipped()))
def test_shipped_code_does_not_know_the_repository(name: str) -> None:
    path = _shipped()[name]
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"REPO_ROOT|sys\.path|\btools[./]", text), f"{path} refers to the repository"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            assert all(a.name.split(".")[0] != "tools" for a in node.names), path
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            assert node.module.split(".")[0] != "tools", path


def test_the_detector_would_see_the_old_demo_code() -> None:
    old = "REPO_ROOT = Path(__file__).resolve().parents[4]\nsys.path.insert(0, str(REPO_ROOT))\n"
    assert re.search(r"REPO_ROOT|sys\.path|\btools[./]", old)
    assert re.search(r"\btools[./]", 'importlib.import_module("tools.demo")')
    assert not re.search(r"\btools[./]", "from functools import lru_cache; aws_lambda_powertools.Logger")


# --- repeated logic, folded --------------------------------------------------------------------------


def _trees() -> dict[str, ast.AST]:
    return {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in MODULES.items()}


def _calls(node: ast.AST, name: str) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if (isinstance(func, ast.Name) and func.id == name) or (
                isinstance(func, ast.Attribute) and func.attr == name
            ):
                return True
    return False


def test_the_nightscout_uuid_namespace_is_defined_once() -> None:
    places = [
        name
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value == b"NightscoutRocks!"
    ]
    assert places == ["linkup_sync.nightscout.treatments"]


def test_the_per_target_v3_choice_is_made_once() -> None:
    """`<default> if target.api_v3 is None else target.api_v3`: runtime.uses_api_v3 only."""
    places = []
    for name, tree in _trees().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.IfExp)
                and isinstance(node.test, ast.Compare)
                and isinstance(node.test.left, ast.Attribute)
                and node.test.left.attr == "api_v3"
                and isinstance(node.test.ops[0], ast.Is)
            ):
                places.append(name)
    assert places == ["linkup_sync.runtime"]


def test_nightscout_url_normalising_with_its_config_error_is_one_function() -> None:
    """Only one function both cleans up NIGHTSCOUT_URL and turns its ValueError into a ConfigError."""
    places = [
        f"{name}.{node.name}"
        for name, tree in _trees().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and _calls(node, "normalize_nightscout_url")
        and _calls(node, "ConfigError")
        and not any(isinstance(inner, ast.FunctionDef) and inner is not node for inner in ast.walk(node))
    ]
    assert places == ["linkup_sync.runtime.nightscout_base_url"]


def test_the_patient_id_pattern_is_checked_in_one_place() -> None:
    """secret_format.is_patient_id (settings.py until issue 25) is the one match; settings.py calls it."""
    tree = ast.parse((RUNTIME / "secret_format.py").read_text(encoding="utf-8"))
    uses = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id == "_PATIENT_RE" and isinstance(node.ctx, ast.Load)
    ]
    assert len(uses) == 1, f"secret_format.py matches the patientId pattern on lines {uses}"


def test_the_patient_id_check_still_names_the_place_and_an_example() -> None:
    from linkup_sync.errors import ConfigError
    from linkup_sync.secret_format import credentials_from_secret
    from linkup_sync.settings import Settings

    base = {"LINK_UP_USERNAME": "a@example.com", "LINK_UP_PASSWORD": "p"}
    site = {"NIGHTSCOUT_URL": "https://ns.example.com", "NIGHTSCOUT_API_TOKEN": "t"}
    for raw, where in (
        ({**base, **site, "LINK_UP_CONNECTION": "not-a-uuid!"}, "in the secret"),
        ({**base, "TARGETS": [{**site, "LINK_UP_CONNECTION": "zz"}]}, "in TARGETS entry 1"),
    ):
        with pytest.raises(ConfigError) as err:
            credentials_from_secret(raw, version="1", secret_id=None)
        assert f"LINK_UP_CONNECTION {where} must be a patientId such as 8b6e4d2c-" in err.value.message
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"LINK_UP_CONNECTION": "nope"}, need_aws=False)
    assert "LINK_UP_CONNECTION must be a patientId such as 8b6e4d2c-" in err.value.message
    upper = "8B6E4D2C-1A3F-4C5E-9D7B-2F0A6C8E4B13"
    assert Settings.from_env({"LINK_UP_CONNECTION": upper}, need_aws=False).connection == upper.lower()


# --- failure context as a declared field ---------------------------------------------------------------


def test_the_failed_runs_report_is_a_declared_field_of_the_error() -> None:
    from linkup_sync.errors import LinkupSyncError, NightscoutUnreachable

    assert "report" in LinkupSyncError.__annotations__
    assert NightscoutUnreachable("down").report is None  # declared: readable before anything sets it
    for name, path in {**_shipped(), **_modules(CLI)}.items():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"getattr\([^)]*[\"']report[\"']", text), f"{name} reads the report with getattr"
        assert not re.search(r"\.report = .*type: ignore", text), f"{name} attaches the report untyped"


# --- one home for each interface, capabilities by name (issue 25) ------------------------------------------


def _layer_trees() -> dict[str, ast.AST]:
    return {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in _modules(RUNTIME).items()}


def _protocols(tree: ast.AST) -> list[str]:
    """The classes of a module that are typing Protocols (`class X(Protocol)`, `class X(typing.Protocol)`)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = [b.value if isinstance(b, ast.Subscript) else b for b in node.bases]
            if any(
                (isinstance(b, ast.Name) and b.id == "Protocol")
                or (isinstance(b, ast.Attribute) and b.attr == "Protocol")
                for b in bases
            ):
                found.append(node.name)
    return found


def test_every_interface_of_the_layer_is_in_ports() -> None:
    places = {name: _protocols(tree) for name, tree in _layer_trees().items()}
    elsewhere = {name: found for name, found in places.items() if found and name != "linkup_sync.ports"}
    assert not elsewhere, f"Protocol classes outside ports.py: {elsewhere}"
    named = {
        "LinkUpSource",
        "NightscoutSink",
        "Clock",
        "StateStore",
        "Sealer",
        "IncidentStore",
        "AlertPublisher",
        "Announcer",
        "CredentialSource",
        "Queue",
        "JwtCache",
        "HoldsJwt",
        "RefreshableCredentials",
    }
    assert named <= set(places["linkup_sync.ports"]), named - set(places["linkup_sync.ports"])


def test_the_protocol_detector_sees_every_spelling() -> None:
    code = "class A(Protocol): ...\nclass B(typing.Protocol): ...\nclass C(Protocol[T]): ...\nclass D(Base): ...\n"
    assert _protocols(ast.parse(code)) == ["A", "B", "C"]


def test_the_data_the_ports_carry_imports_no_interface() -> None:
    """ports.py names the data types, so no data module may import it (not even for type checking)."""
    graph = _graph()
    data = ["linkup_sync.model", "linkup_sync.readings", "linkup_sync.report", "linkup_sync.state.model"]
    data += ["linkup_sync.incidents.model", "linkup_sync.errors"]
    assert {"linkup_sync.model", "linkup_sync.state.model", "linkup_sync.incidents.model"} <= graph["linkup_sync.ports"]
    assert {name: "linkup_sync.ports" for name in data if "linkup_sync.ports" in graph[name]} == {}


# Attributes of the package's own types that were once probed with getattr (or hasattr): a capability
# is a named protocol of ports.py (isinstance), a report or an error is read through its declared type.
PROBED = {"refresh_next", "post_announcement", "jwt_cache", "retry_after", "failure", "targets", "skipped"}
PROBED |= {"needs_person", "login_block_reason", "report"}


def _own_attributes() -> set[str]:
    """Every member of a ports protocol and every field of the report, the account state and the errors."""
    from dataclasses import fields

    from linkup_sync import ports
    from linkup_sync.errors import LinkUpRateLimited
    from linkup_sync.report import RunReport, TargetReport
    from linkup_sync.state.model import AccountState, TargetState

    names = set(PROBED)
    for name in _protocols(_layer_trees()["linkup_sync.ports"]):
        names |= {n for n in vars(getattr(ports, name)) if not n.startswith("_")}
        names |= set(getattr(getattr(ports, name), "__annotations__", {}))
    for cls in (RunReport, TargetReport, AccountState, TargetState):
        names |= {f.name for f in fields(cls)}
    names |= set(vars(LinkUpRateLimited(7)))
    return names


def _probes(tree: ast.AST, names: set[str]) -> list[str]:
    """The getattr/hasattr calls that ask an object for one of `names` by a constant string."""
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and node.args[1].value in names
        ):
            found.append(f"{node.func.id}(..., {node.args[1].value!r}) line {node.lineno}")
    return found


def test_no_getattr_probing_of_the_packages_own_capabilities() -> None:
    names = _own_attributes()
    assert PROBED | {"get", "requests_made", "upload", "backoff_until"} <= names  # derived from the real types
    probes = {name: found for name, tree in _layer_trees().items() if (found := _probes(tree, names))}
    assert not probes, f"getattr probes of the package's own attributes: {probes}"


def _argument_names(parser: argparse.ArgumentParser) -> set[str]:
    """Every `dest` of the command line's parser and its subcommands' (what `args.<name>` may read)."""
    names: set[str] = set()
    for action in parser._actions:
        names.add(action.dest)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _argument_names(sub)
    return names - {"help", argparse.SUPPRESS}


def _cli_own_attributes() -> set[str]:
    """What the command line may read of the package's own objects: the layer's (above), the run's
    settings, the state stores it builds itself, its own output stream's additions, its parsed arguments."""
    import io
    from dataclasses import fields

    from linkup_sync.settings import Settings
    from linkup_sync.state.dynamodb import DynamoDBStateStore
    from linkup_sync.state.file import FileStateStore
    from linkup_sync_cli.main import build_parser
    from linkup_sync_cli.output import PrintableText

    names = _own_attributes() | {f.name for f in fields(Settings)} | _argument_names(build_parser())
    for store in (DynamoDBStateStore("t", client=None), FileStateStore("state.json")):
        names |= {n for n in (*vars(store), *vars(type(store))) if not n.startswith("_")}
        names |= {n for n in vars(type(store).__mro__[1]) if not n.startswith("_")}
    names |= set(vars(PrintableText)) - set(dir(io.TextIOBase)) - {"stream"}  # its `control`, not the stream's
    return names


def test_no_getattr_probing_of_the_packages_own_capabilities_in_the_command_line() -> None:
    """The command line reads what it built or parsed through its type too: `isinstance` on the store
    it chose, the report's and the settings' declared fields, `args.<dest>` of its own parser."""
    names = _cli_own_attributes()
    assert {"targets", "table_name", "path", "client", "sensor_start", "control", "secret_id"} <= names
    assert not names & {"encoding", "write"}  # a text stream's own: not the package's
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in _modules(CLI).items()}
    probes = {name: found for name, tree in trees.items() if (found := _probes(tree, names))}
    assert not probes, f"getattr probes of the package's own attributes in the command line: {probes}"


def test_the_probe_detector_would_see_the_old_code() -> None:
    old = (
        'refresh = getattr(deps.credentials, "refresh_next", None)\n'
        'ok = callable(getattr(sink, "post_announcement", None))\n'
        'cache = getattr(sink, "jwt_cache", None)\n'
        'retry_after = getattr(exc, "retry_after", None)\n'
        'targets = list(getattr(report, "targets", []))\n'
        'held = hasattr(report, "skipped")\n'
        'sock = getattr(self, "sock", None)\n'  # urllib3's own attribute: not the package's
    )
    assert len(_probes(ast.parse(old), _own_attributes())) == 6
    old_cli = (
        'table = getattr(store, "table_name", None)\n'
        'region = getattr(getattr(getattr(store, "client", None), "meta", None), "region_name", None)\n'
        'path = getattr(store, "path", None)\n'
        'sensor_start = bool(getattr(settings, "sensor_start", False))\n'
        'control = getattr(out, "control", out.write)\n'
        'dynamodb = client("dynamodb", secret_id=getattr(args, "secret_id", None))\n'
        'encoding = getattr(out, "encoding", None)\n'  # a text stream's own attribute: not the package's
    )
    assert len(_probes(ast.parse(old_cli), _cli_own_attributes())) == 6


def test_observe_reads_a_typed_report() -> None:
    import inspect

    from linkup_sync.incidents.desk import observe, wants_fresh_secret

    for function in (observe, wants_fresh_secret):
        assert inspect.signature(function).parameters["report"].annotation == "RunReport"
    assert inspect.signature(observe).parameters["account"].annotation == "AccountState | None"


# --- the incidents package, nothing in-memory in the layer -------------------------------------------------


def test_the_incidents_package_init_holds_only_its_docstring() -> None:
    tree = ast.parse((RUNTIME / "incidents" / "__init__.py").read_text(encoding="utf-8"))
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), "incidents/__init__.py re-exports"
    assert not (RUNTIME / "incidents.py").exists()
    assert {"linkup_sync.incidents.model", "linkup_sync.incidents.texts", "linkup_sync.incidents.desk"} <= set(MODULES)


# Where a store of the layer may keep its data: outside the process (DynamoDB, or a file for local runs).
STORE_MODULES = {
    "linkup_sync.state.dynamodb",
    "linkup_sync.state.incidents",
    "linkup_sync.state.file",
    "linkup_sync.incidents.known",  # OpenTally: passes every call to the real store, noting what stays open
}
STORE_METHODS = {
    "save_account",
    "record_upload",
    "acquire_login_lock",
    "load_incidents",
    "open_incident",
    "remember_people",
}


def _stores(tree: ast.AST) -> list[str]:
    """Classes that implement a state or incident store (they define one of its methods), or are named
    like an in-memory stand-in."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and not _protocols(ast.Module(body=[node], type_ignores=[])):
            methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
            if methods & STORE_METHODS or re.match(r"(In)?Memory|Fake|Stub", node.name):
                found.append(node.name)
    return found


def test_nothing_in_memory_ships_in_the_layer() -> None:
    places = {name: found for name, tree in _layer_trees().items() if (found := _stores(tree))}
    assert {name: found for name, found in places.items() if name not in STORE_MODULES} == {}
    assert places["linkup_sync.state.dynamodb"] == ["DynamoDBStateStore"]
    memory = [c for found in places.values() for c in found if re.match(r"(In)?Memory|Fake|Stub", c)]
    assert memory == []
    fakes = ast.parse((ROOT / "tests" / "fakes.py").read_text(encoding="utf-8"))
    assert {"MemoryStateStore", "MemoryIncidentStore"} <= set(_stores(fakes))  # the detector sees them there


# --- sizes -------------------------------------------------------------------------------------------------

MAX_MODULE_LINES = 400


def test_no_layer_module_is_over_400_lines() -> None:
    sizes = {
        path.relative_to(RUNTIME).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in RUNTIME.rglob("*.py")
    }
    assert sizes["sync.py"] > 100 and sizes["ports.py"] > 100  # the walk found the real modules
    over = {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not over, f"layer modules over {MAX_MODULE_LINES} lines: {over}"
