"""Every section reference in the repository resolves to a section of a docs/ file that exists.

Code, tests and tools cite the API facts as "§N" (e.g. "§5.4"). Each such reference must name a section
heading of the docs file it points at, and nothing may point outside the repository (the research notes
the docs were written from are not part of a clone). Resolution rule, kept simple enough to follow by eye:

* a reference on a line that names ``docs/<file>.md`` before it points at the last such file named on
  that line;
* otherwise it points at the first ``docs/<file>.md`` the file names (its header says which spec it
  follows); a file under docs/ points at itself.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SECTION = "\N{SECTION SIGN}"  # spelled out so this file holds no reference itself
REF = re.compile(SECTION + r"(\d+(?:\.\d+)*)")
DOC_MENTION = re.compile(r"(?<![\w/.-])docs/([a-z0-9-]+\.md)")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? ", re.MULTILINE)
OUTSIDE = re.compile(r"(\.\./|/work/)shared\b|\.\./\.\./specs/")
MD_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".json", ".txt", ".cfg", ".ini", ".sh", ".lock"}
SKIP_DIRS = {"__pycache__", "node_modules"}


def repo_text_files() -> list[Path]:
    """The repository's own text files: hidden folders (.git, .venv, caches) and build metadata pruned."""
    files: list[Path] = []
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = [
            d
            for d in dirs
            if (d == ".ci" or not d.startswith(".")) and d not in SKIP_DIRS and not d.endswith(".egg-info")
        ]
        for name in names:
            path = Path(folder) / name
            if path.suffix in TEXT_SUFFIXES or name in {"Makefile", "run"}:
                files.append(path)
    return sorted(files)


def doc_sections(name: str) -> set[str]:
    return set(HEADING.findall((DOCS / name).read_text(encoding="utf-8")))


def references(path: Path) -> list[tuple[int, str, str | None]]:
    """(line number, section, docs file it points at or None) for every reference in ``path``."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.parent == DOCS:
        default: str | None = path.name
    else:
        first = DOC_MENTION.search(text)
        default = first.group(1) if first else None
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for ref in REF.finditer(line):
            named = DOC_MENTION.findall(line[: ref.start()])
            found.append((number, ref.group(1), named[-1] if named else default))
    return found


FILES = repo_text_files()


def test_the_docs_exist_with_numbered_sections() -> None:
    assert doc_sections("librelinkup-api.md") >= {"2.1", "3.5", "4.3", "5.6", "7.2", "11", "13.2", "15.3"}
    assert doc_sections("nightscout-api.md") >= {"2.5", "3.2", "3.7", "4", "5.4", "5.6", "11"}


def test_the_walk_sees_code_tests_tools_and_docs() -> None:
    rels = {p.relative_to(ROOT).as_posix() for p in FILES}
    assert "tools/simulators/nightscout/v1.py" in rels
    assert "layers/linkup_sync/python/linkup_sync/librelinkup/parsing.py" in rels
    assert "tests/fixtures/librelinkup/README.md" in rels
    assert "docs/nightscout-api.md" in rels


def test_every_section_reference_names_an_existing_section() -> None:
    problems = []
    total = 0
    for path in FILES:
        for line, section, doc in references(path):
            total += 1
            where = f"{path.relative_to(ROOT)}:{line} {SECTION}{section}"
            if doc is None:
                problems.append(f"{where}: the file names no docs/<file>.md to resolve it against")
            elif not (DOCS / doc).is_file():
                problems.append(f"{where}: docs/{doc} does not exist")
            elif section not in doc_sections(doc):
                problems.append(f"{where}: docs/{doc} has no section {section}")
    assert total > 100, "the walk found suspiciously few references"
    assert not problems, "\n".join(problems)


def test_every_docs_file_named_exists() -> None:
    missing = [
        f"{path.relative_to(ROOT)}: docs/{name}"
        for path in FILES
        for name in DOC_MENTION.findall(path.read_text(encoding="utf-8", errors="replace"))
        if not (DOCS / name).is_file()
    ]
    assert not missing, "\n".join(missing)


def test_no_file_refers_outside_the_repository() -> None:
    me = Path(__file__).resolve()
    offenders = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in FILES
        if path.resolve() != me
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("path", [p for p in FILES if p.suffix == ".md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_markdown_links_resolve(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    broken = [
        target
        for target in MD_LINK.findall(text)
        if "://" not in target and not (path.parent / target).resolve().is_file()
    ]
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_the_resolution_rule(tmp_path: Path) -> None:
    """The rule itself, on a made-up file: the same line wins, else the file's first docs mention."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        f"header: docs/nightscout-api.md\nplain {SECTION}5.4\nsee docs/librelinkup-api.md {SECTION}11\n",
        encoding="utf-8",
    )
    assert references(sample) == [(2, "5.4", "nightscout-api.md"), (3, "11", "librelinkup-api.md")]
    (tmp_path / "orphan.py").write_text(f"no docs named {SECTION}1\n", encoding="utf-8")
    assert references(tmp_path / "orphan.py") == [(1, "1", None)]
