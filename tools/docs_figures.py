"""The blocks of figures in the documentation, written from the results files kept in docs/results/.

    python -m tools.docs_figures [--check]     (make docs-figures)

No figure in README.md or docs/ is typed by hand: each block between `<!-- NAME -->` and `<!-- /NAME -->`
is what the function of BLOCKS writes for the kept results of the tool that measured it:

    docs/results/demo.json    make demo    the demo's output, line for line
    docs/results/bench.json   make bench   performance, and the personal stack's monthly bill
    docs/results/scale.json   make scale   the hosted stack's measured hour and its monthly bill

`make demo`, `make bench` and `make scale` write their file and then call `rewrite_docs`; without
arguments this module re-renders every block from the kept files without measuring anything (after a
price change in tools/bench.py or tools/scale.py, for example). `--check` changes nothing and exits 1
when a block differs from what would be written (tests/tools/test_docs_figures.py does the same).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
DEMO_FILE = RESULTS / "demo.json"
BENCH_FILE = RESULTS / "bench.json"
SCALE_FILE = RESULTS / "scale.json"


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path.name} holds no JSON object")
    return data


# --- the blocks -------------------------------------------------------------------------------------------


def demo_block() -> str:
    demo = load(DEMO_FILE)
    return "\n".join(["```", f"$ {demo['command']}", *demo["lines"], "```"])


def bench_block() -> str:
    from tools.bench import performance_markdown

    return performance_markdown(load(BENCH_FILE))


def personal_cost_block() -> str:
    from tools.bench import cost_markdown, personal_bill

    bench = load(BENCH_FILE)
    cost = personal_bill(bench)["cost"]
    return (
        cost_markdown(bench) + "\n\n" + f"**About ${cost['5 minutes']['total']:.2f} a month at the 5-minute schedule, "
        f"${cost['1 minute']['total']:.2f} at 1 minute.**"
    )


def scale_summary() -> dict[str, Any]:
    """The kept `make scale` results with the bill and the personal comparison computed afresh."""
    from tools.scale import monthly_cost, personal_bill

    results = load(SCALE_FILE)
    return {**results, "cost": monthly_cost(results), "personal": personal_bill(BENCH_FILE)}


def scale_block() -> str:
    from tools.scale_report import report

    results = scale_summary()
    text = report(results)
    first, rest = text.split("\n", 1)
    measured = results["accounts"]
    minutes = results["seconds"]["total"] / 60
    note = (
        f"Measured with **{measured:,} accounts** (`make scale` runs 10,000 by default; this run used "
        f"`--accounts {measured}` and took {minutes:,.0f} minutes of wall time). How full the batches are and "
        "how often a container decrypts depend on the number of accounts, so the figures per account at "
        "10,000 accounts differ from these."
        if measured != 10_000
        else f"Measured with {measured:,} accounts ({minutes:,.0f} minutes of wall time)."
    )
    return "\n".join([f"**{first.removeprefix('## ')}**", "", note, rest])


def figures_block() -> str:
    """The README's headline figures: readings lost and doubled, requests per run, the monthly bills."""
    from tools.bench import personal_bill

    demo, bench = load(DEMO_FILE), load(BENCH_FILE)
    summary = demo["summary"]
    req = bench["requests"]["warm"]

    def requests(count: int, where: str) -> str:
        return f"{count} {where} request" + ("" if count == 1 else "s")

    cost = personal_bill(bench)["cost"]
    lines = [
        f"- **Readings lost: {summary['missing']}, readings doubled: {summary['duplicates']}** in `make demo` "
        f"({summary['runs']} runs, {summary['failed_runs']} of them while Nightscout was down: "
        f"{summary['readings_in_nightscout']} readings in Nightscout, {summary['logins']} login).",
        f"- **{requests(req['linkup'], 'LibreLink Up')} and at most {requests(req['nightscout'], 'Nightscout')} "
        "per run** "
        f"in the steady state (`make bench`); one login per 180-day ticket.",
        f"- **About ${cost['5 minutes']['total']:.2f} a month** for one person at the 5-minute schedule "
        f"(${cost['1 minute']['total']:.2f} at 1 minute), free tier ignored (`make bench`).",
    ]
    if SCALE_FILE.exists():
        scale = scale_summary()
        lines.append(
            f"- **About ${scale['cost']['per_account']:.3f} per person a month** on the hosted stack for many "
            f"people (`make scale`, measured with {scale['accounts']:,} accounts)."
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Block:
    name: str
    page: str  # relative to the repository root
    render: Callable[[], str]
    sources: tuple[Path, ...]  # the results files it is written from


BLOCKS = (
    Block("figures", "README.md", figures_block, (DEMO_FILE, BENCH_FILE)),
    Block("figures", "docs/index.md", figures_block, (DEMO_FILE, BENCH_FILE)),
    Block("demo-output", "docs/try-it.md", demo_block, (DEMO_FILE,)),
    Block("bench", "docs/performance.md", bench_block, (BENCH_FILE,)),
    Block("personal-cost", "docs/costs.md", personal_cost_block, (BENCH_FILE,)),
    Block("scale", "docs/costs.md", scale_block, (SCALE_FILE, BENCH_FILE)),
)


# --- writing them -----------------------------------------------------------------------------------------


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- {re.escape(name)} -->\n)(.*?)\n?(<!-- /{re.escape(name)} -->)", re.S)


def block_text(text: str, name: str) -> str:
    """What stands between the block's markers in `text`."""
    found = _pattern(name).search(text)
    if found is None:
        raise ValueError(f"no <!-- {name} --> ... <!-- /{name} --> block")
    return found.group(2)


def replace_block(text: str, name: str, content: str) -> str:
    block_text(text, name)  # the markers must be there
    return _pattern(name).sub(lambda m: m.group(1) + content + "\n" + m.group(3), text, count=1)


def render_all(*, root: Path = ROOT, check: bool = False) -> list[str]:
    """Rewrite every block whose results file exists; the pages changed (or, with check, that differ)."""
    changed: list[str] = []
    for block in BLOCKS:
        if not all(source.exists() for source in block.sources):
            continue
        page = root / block.page
        text = page.read_text(encoding="utf-8")
        new = replace_block(text, block.name, block.render())
        if new != text:
            changed.append(f"{block.page} ({block.name})")
            if not check:
                page.write_text(new, encoding="utf-8")
    return changed


def rewrite_docs() -> None:
    """What `make demo`, `make bench` and `make scale` do after writing their results file: every block
    rewritten, each changed page named on standard error."""
    for page in render_all():
        print(f"updated {page}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is out of date")
    args = parser.parse_args(argv)
    changed = render_all(check=args.check)
    for page in changed:
        print(("out of date: " if args.check else "updated ") + page, file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
