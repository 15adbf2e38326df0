"""Issue 22: the documentation site, and every figure in it written by the code that measured it.

The figure blocks of README.md and docs/ must be what tools/docs_figures.py writes from the results kept
in docs/results/; docs/troubleshooting.md must be what tools/troubleshooting.py writes from the error
classes; the bills follow from the measured units at today's prices; `mkdocs build --strict` really fails
on a page missing from the nav and on a broken link.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools.demo import main as demo_main

from tools import bench, docs_figures, scale, troubleshooting

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
MKDOCS = Path(sys.executable).with_name("mkdocs")


# --- the figure blocks ---------------------------------------------------------------------------------------


def test_the_results_are_kept_in_the_repository() -> None:
    for path in (docs_figures.DEMO_FILE, docs_figures.BENCH_FILE, docs_figures.SCALE_FILE):
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run the tool that writes it"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "docs/results/bench.json"], cwd=ROOT, capture_output=True, check=False
    )
    assert ignored.returncode != 0, "docs/results/ must not be git-ignored"


@pytest.mark.parametrize("block", docs_figures.BLOCKS, ids=lambda b: f"{b.page}:{b.name}")
def test_every_figure_block_is_what_its_tool_writes_for_the_kept_results(block: docs_figures.Block) -> None:
    text = (ROOT / block.page).read_text(encoding="utf-8")
    assert docs_figures.block_text(text, block.name) == block.render(), (
        f"{block.page} ({block.name}) differs from the kept results: run make docs-figures"
    )


def test_nothing_is_out_of_date() -> None:
    assert docs_figures.render_all(check=True) == []


def test_a_block_is_replaced_between_its_markers_only() -> None:
    text = "before\n<!-- x -->\nold\n<!-- /x -->\nafter\n"
    assert docs_figures.replace_block(text, "x", "new\nlines") == "before\n<!-- x -->\nnew\nlines\n<!-- /x -->\nafter\n"
    assert docs_figures.block_text(text, "x") == "old"
    with pytest.raises(ValueError, match="no <!-- y -->"):
        docs_figures.replace_block(text, "y", "z")


def test_the_demo_keeps_exactly_what_it_printed(tmp_path: Path) -> None:
    """The demo block is the demo's output: main() keeps each printed line, and nothing else."""
    out = io.StringIO()
    kept = tmp_path / "demo.json"
    with contextlib.redirect_stdout(out):
        status = demo_main(["--runs", "8", "--output", str(kept), "--no-docs"])
    assert status == 0
    demo = json.loads(kept.read_text())
    assert demo["lines"] == out.getvalue().splitlines()
    assert demo["command"] == "python -m tools.demo --runs 8 --output " + str(kept) + " --no-docs"
    assert demo["summary"]["runs"] == 8 and demo["summary"]["duplicates"] == 0 and demo["summary"]["missing"] == 0
    assert demo["summary"]["first_run"]["linkup_requests"] == 3  # login, connections, graph


def test_the_published_demo_is_a_full_make_demo() -> None:
    demo = docs_figures.load(docs_figures.DEMO_FILE)
    assert demo["command"] == "make demo"
    assert demo["summary"]["ok"] and demo["summary"]["missing"] == 0 and demo["summary"]["duplicates"] == 0
    assert sum(1 for line in demo["lines"] if " LLU " in line) == demo["summary"]["runs"] == 72


# --- the bills ---------------------------------------------------------------------------------------------


def test_dynamodb_prices_are_todays_on_demand_prices() -> None:
    assert pytest.approx(0.625 / 1_000_000) == bench.PRICE_DDB_WRITE_UNIT
    assert pytest.approx(0.125 / 1_000_000) == bench.PRICE_DDB_READ_UNIT
    assert vars(scale)["PRICE_DDB_WRITE_UNIT"] == bench.PRICE_DDB_WRITE_UNIT  # tools/scale.py imports the same


def test_the_personal_bill_follows_from_the_measured_units() -> None:
    results = docs_figures.load(docs_figures.BENCH_FILE)
    bill = bench.personal_bill(results)
    five = bill["cost"]["5 minutes"]
    steady = results["steady_state"]["5 minutes"]
    runs = bench.RUNS_PER_MONTH["5 minutes"]
    stored = sum(steady["item_bytes"].values()) / 2**30 * bench.PRICE_DDB_STORED_GB_MONTH
    expected = runs * (
        steady["query_read_units"] * bench.PRICE_DDB_READ_UNIT
        + steady["update_write_units"] * bench.PRICE_DDB_WRITE_UNIT
    )
    assert five["dynamodb"] == pytest.approx(expected + stored)
    assert f"**${five['total']:.2f}**" in docs_figures.personal_cost_block()
    assert f"About ${five['total']:.2f} a month" in docs_figures.figures_block()


def test_the_hosted_bill_follows_from_the_measured_units() -> None:
    results = docs_figures.load(docs_figures.SCALE_FILE)
    cost = scale.monthly_cost(results)
    reads = sum(v["read_units"] for v in results["dynamodb"]["hour"].values())
    assert cost["variable"]["dynamodb_reads"] == pytest.approx(
        reads * scale.HOURS_PER_MONTH * bench.PRICE_DDB_READ_UNIT
    )
    block = docs_figures.scale_block()
    assert f"**{scale_usd(cost['per_account'])}**" in block
    assert f"{results['accounts']:,} accounts" in block  # the count measured, whatever it was


def scale_usd(value: float) -> str:
    from tools.scale_report import _usd

    return _usd(value)


def test_a_price_change_re_renders_without_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    before = docs_figures.personal_cost_block(), docs_figures.scale_block()
    monkeypatch.setattr(bench, "PRICE_DDB_WRITE_UNIT", 1.25 / 1_000_000)  # the price before November 2024
    monkeypatch.setattr(scale, "PRICE_DDB_WRITE_UNIT", 1.25 / 1_000_000)
    after = docs_figures.personal_cost_block(), docs_figures.scale_block()
    assert after[0] != before[0] and after[1] != before[1]


def test_scale_reads_the_personal_bill_from_the_kept_bench_results(tmp_path: Path) -> None:
    assert "README" not in (ROOT / "tools" / "scale.py").read_text()
    results = docs_figures.load(docs_figures.BENCH_FILE)
    kept = tmp_path / "bench.json"
    kept.write_text(json.dumps(results))
    personal = scale.personal_bill(kept)
    assert personal["usd"] == pytest.approx(bench.personal_bill(results)["cost"]["5 minutes"]["total"])
    assert scale.personal_bill(tmp_path / "none.json")["usd"] is None


# --- troubleshooting, written from the error classes ------------------------------------------------------


def test_the_troubleshooting_page_is_what_the_tool_writes() -> None:
    assert troubleshooting.PAGE.read_text(encoding="utf-8") == troubleshooting.render(), (
        "docs/troubleshooting.md is out of date: run python -m tools.troubleshooting"
    )


def test_every_error_class_is_on_the_troubleshooting_page() -> None:
    names = {cls.__name__ for cls in troubleshooting.error_classes()}
    documented = {cls.__name__ for cls in troubleshooting.ENTRIES} | set(troubleshooting.NOT_SHOWN)
    assert names == documented, f"not documented: {names - documented}; gone from errors.py: {documented - names}"
    page = troubleshooting.PAGE.read_text(encoding="utf-8")
    for cls, entry in troubleshooting.ENTRIES.items():
        for example in entry.examples:
            error = example()
            assert type(error) is cls or isinstance(error, cls)
            assert troubleshooting._quote(error.message) in page


def test_no_message_on_the_page_shows_a_secret() -> None:
    page = troubleshooting.PAGE.read_text(encoding="utf-8")
    for value in (troubleshooting.FLAT["LINK_UP_PASSWORD"], troubleshooting.FLAT["NIGHTSCOUT_API_TOKEN"]):
        assert value not in page


# --- the site ---------------------------------------------------------------------------------------------


def _config() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _nav_pages(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [page for item in node for page in _nav_pages(item)]
    if isinstance(node, dict):
        return [page for value in node.values() for page in _nav_pages(value)]
    return []


def test_readme_is_short_and_links_the_three_paths() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for command in ("make demo", "make test", "make sandbox"):
        assert command in readme
    for page in ("docs/setup.md", "docs/hosted.md", "docs/contributing.md"):
        assert f"]({page})" in readme


def test_every_page_is_in_the_nav_once() -> None:
    pages = _nav_pages(_config()["nav"])
    assert len(pages) == len(set(pages))
    assert set(pages) == {p.name for p in DOCS.glob("*.md")}


def test_the_build_fetches_nothing() -> None:
    config = _config()
    assert config["theme"]["name"] == "material" and config["theme"]["font"] is False
    assert config.get("plugins") == ["search"]  # built locally; no privacy or social plugin that downloads


def test_every_make_target_is_on_the_contributing_page() -> None:
    targets = re.findall(r"^([a-z-]+):.*## ", (ROOT / "Makefile").read_text(), flags=re.M)
    page = (DOCS / "contributing.md").read_text(encoding="utf-8")
    missing = [t for t in targets if f"`make {t}" not in page]
    assert len(targets) > 20 and not missing, missing


def _build(docs_copy: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(ROOT / "mkdocs.yml", docs_copy / "mkdocs.yml")
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(docs_copy / "site")],
        cwd=docs_copy,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


def test_the_strict_build_fails_on_a_page_missing_from_the_nav_and_on_a_broken_link(tmp_path: Path) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    assert _build(tmp_path).returncode == 0  # the site as it is builds
    (tmp_path / "docs" / "stray.md").write_text("# Stray\n")
    missing = _build(tmp_path)
    assert missing.returncode != 0 and "stray.md" in missing.stderr
    (tmp_path / "docs" / "stray.md").unlink()
    with (tmp_path / "docs" / "costs.md").open("a") as page:
        page.write("\n[gone](no-such-page.md) and [no anchor](setup.md#no-such-heading)\n")
    broken = _build(tmp_path)
    assert broken.returncode != 0
    assert "no-such-page.md" in broken.stderr and "no-such-heading" in broken.stderr
