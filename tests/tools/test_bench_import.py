"""tools/bench_import.py (make bench's import figures) on a short export: the command runs in its own
process, stores every reading once, and the second import of the same file stores nothing. No figure of
speed is asserted: timing belongs to `make bench`."""

from __future__ import annotations

from tools.bench_import import measure_import


def test_the_import_bench_measures_two_imports_and_a_comparison() -> None:
    results = measure_import(days=2, compare_days=1, timeout_s=300)
    first, second = results["first"], results["second"]
    assert first["exit"] == 0 and second["exit"] == 0
    assert first["stored"] == first["historic_rows"] == 2 * 288
    assert first["posts"] == 2 and first["gets"] == 1  # 576 readings in batches of 288, one read
    assert second["posts"] == 0 and results["stored_after_second"] == first["stored"]
    assert first["max_rss_mb"] > 0 and results["import_1_days"]["stored"] == 288
    assert second["summary"][0] == "imported: 0 readings"
