"""`linkup-sync import-csv` against the Nightscout stand-in (v1 and v3), with generated LibreView exports
(tools/libreview_exports.py): every historic reading stored once at its UTC instant, nothing within 150 s
of an entry already there, a re-import that stores nothing, and the refusals a person has to act on.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import pytest
from tools.libreview_exports import (
    DAY_FIRST_FORMAT,
    US_FORMAT,
    ExportSpec,
    Sensor,
    write_export_file,
)
from tools.simulators.clock import VirtualClock
from tools.simulators.nightscout import NightscoutStandIn

from linkup_sync.nightscout.treatments import v3_identifier
from linkup_sync.trends import band
from linkup_sync_cli import main as cli
from tests.integration.harness import Harness

SECRET = "test-secret-123456"
NOW = datetime(2026, 12, 6, 2, 0, tzinfo=UTC)
V3_PERMISSIONS = ["api:entries:create", "api:entries:read", "api:entries:update"]

# Europe/Berlin: summer time ends 2026-10-25 01:00 UTC (03:00 CEST -> 02:00 CET), starts 2026-03-29 01:00 UTC.
AUTUMN = ExportSpec(
    sensors=(Sensor("FreeStyle Libre 2", "MAAA123-A4567", datetime(2026, 10, 24, 20, 0, tzinfo=UTC), 12, 15),),
    zone="Europe/Berlin",
    language="en",
    unit="mg/dL",
    date_format=US_FORMAT,
    below_range_every=17,
)
SPRING = ExportSpec(
    sensors=(
        Sensor(
            "FreeStyle Libre 3", "5114dd15-f167-41ab-b12a-801e1604ed20", datetime(2026, 3, 28, 20, 0, tzinfo=UTC), 10, 5
        ),
    ),
    zone="Europe/Berlin",
    language="de",
    unit="mmol/L",
    date_format=DAY_FIRST_FORMAT,
)


@dataclass
class Site:
    ns: NightscoutStandIn
    clock: VirtualClock
    env: dict[str, str]

    def run(self, capsys: pytest.CaptureFixture[str], *args: str, **env: str) -> tuple[int, str, str]:
        code = cli.main(["import-csv", *args], env={**self.env, **env}, clock=self.clock)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    def stored(self) -> dict[int, int]:
        """epoch seconds -> sgv of every stored sgv entry; fails on two at one instant."""
        entries = self.ns.sgv_entries()
        assert self.ns.duplicates() == []
        return {int(d["date"]) // 1000: int(d["sgv"]) for d in entries}


def _site(v3: bool) -> Iterator[Site]:
    clock = VirtualClock(NOW.timestamp())
    ns = NightscoutStandIn(clock).start()
    env = {"NIGHTSCOUT_URL": ns.base_url, "NIGHTSCOUT_API_TOKEN": SECRET}
    if v3:
        ns.add_role("importer", V3_PERMISSIONS)
        env = {**env, "NIGHTSCOUT_API_TOKEN": ns.add_subject("importer", ["importer"]), "NIGHTSCOUT_API_V3": "true"}
    try:
        yield Site(ns, clock, env)
    finally:
        ns.stop()


@pytest.fixture(params=["v1", "v3"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    yield from _site(request.param == "v3")


@pytest.fixture
def v1_site() -> Iterator[Site]:
    yield from _site(False)


def _export(tmp_path: Path, spec: ExportSpec, name: str = "glucose.csv") -> tuple[Path, list[tuple[int, int]]]:
    path = tmp_path / name
    return path, write_export_file(path, spec)


def _assert_no_secret(site: Site, text: str) -> None:
    token = site.env["NIGHTSCOUT_API_TOKEN"]
    for value in (token, hashlib.sha1(token.encode()).hexdigest()):  # noqa: S324
        assert value not in text


# --- every reading once, at the right instant ------------------------------------------------------


def test_english_mg_dl_us_format_across_the_autumn_change(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = _export(tmp_path, AUTUMN)
    text = path.read_bytes()
    assert text.count(b"\r\n") == text.count(b"\n") and b"AM" in text and b"PM" in text
    # The repeated hour is in the file twice: 02:00 .. 02:45 local, once in summer time, once in winter time.
    assert text.count(b"10-25-2026 02:15 AM") == 2
    code, out, err = site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 0, err
    stored = site.stored()
    assert stored == dict(truth)  # every historic reading at its UTC instant with its value, nothing else
    assert len(truth) == 48 and min(v for _, v in truth) == 40  # the below-range floor is imported as 40
    assert "imported: 48 readings" in out
    assert "not imported (only historic readings are): 5 scan rows, 2 food rows, 1 note or event row" in out
    _assert_no_secret(site, out + err)


def test_german_mmol_day_first_across_the_spring_change(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = _export(tmp_path, SPRING)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("Glukose-Werte,Erstellt am,") and "Glukosewert-Verlauf mmol/L" in text
    assert "29-03-2026 01:55" in text and "29-03-2026 03:00" in text and "29-03-2026 02:" not in text
    code, out, err = site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 0, err
    assert "imported: 120 readings" in out
    assert "span of the file's readings: 2026-03-28 21:00 CET to 2026-03-29 07:55 CEST" in out
    stored = site.stored()
    assert sorted(stored) == sorted(t for t, _ in truth)
    assert all(abs(stored[t] - v) <= 1 for t, v in truth)  # mmol/L with one decimal: within 1 mg/dL
    if site.env.get("NIGHTSCOUT_API_V3"):
        docs = {d["date"]: d for d in site.ns.sgv_entries()}
        first = truth[0][0] * 1000
        assert docs[first]["identifier"] == v3_identifier(f"linkup-sync_{first}")  # the bridge's own identity
        assert docs[first]["utcOffset"] == 60  # CET before the change
        assert docs[truth[-1][0] * 1000]["utcOffset"] == 120  # CEST after it


def test_every_imported_reading_gets_a_direction_from_the_readings_before_it(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An export has no arrows: each entry's direction is the band of the change from the reading 5 minutes
    before it (issue 24's rule), and only the file's first reading, with nothing before it, has none."""
    path, _ = _export(tmp_path, SPRING)
    code, _, err = site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 0, err
    docs = sorted(site.ns.sgv_entries(), key=lambda d: int(d["date"]))
    assert docs[0]["direction"] == "NOT COMPUTABLE"
    for before, entry in itertools.pairwise(docs):
        span_s = (int(entry["date"]) - int(before["date"])) // 1000
        assert span_s == 300
        change = int(entry["sgv"]) - int(before["sgv"])
        assert entry["direction"] == band(Fraction(change * 60, span_s)), (before, entry)
    assert len({d["direction"] for d in docs[1:]}) >= 2  # the series moves: not one arrow for all


def test_the_device_name_setting_gives_the_bridges_own_identity(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With NIGHTSCOUT_DEVICE_NAME set (as people moving from nightscout-librelink-up keep theirs), imported
    entries carry that device, and with API v3 the identifier the bridge makes from it."""
    path, truth = _export(tmp_path, SPRING)
    code, _, err = site.run(capsys, str(path), "--timezone", "Europe/Berlin", NIGHTSCOUT_DEVICE_NAME="my-libre")
    assert code == 0, err
    docs = {d["date"]: d for d in site.ns.sgv_entries()}
    first = truth[0][0] * 1000
    assert {d["device"] for d in docs.values()} == {"my-libre"}
    if site.env.get("NIGHTSCOUT_API_V3"):
        assert docs[first]["identifier"] == v3_identifier(f"my-libre_{first}")


def test_rows_grouped_by_type_and_sensor_are_imported_in_time_order(
    v1_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two sensors, each with its historic, scan, food and event groups: the file is not chronological."""
    start = datetime(2026, 11, 20, 0, 0, tzinfo=UTC)
    spec = ExportSpec(
        sensors=(
            Sensor("FreeStyle Libre 3", "b59d4499-1a07-462b-b7da-a179f2093996", start + timedelta(hours=10), 10, 5),
            Sensor("FreeStyle Libre 3", "c1e2d3f4-1a07-462b-b7da-a179f2093996", start, 10, 5),
        ),
        zone="America/New_York",
    )
    path, truth = _export(tmp_path, spec)
    code, _, err = v1_site.run(capsys, str(path), "--timezone", "America/New_York")
    assert code == 0, err
    assert v1_site.stored() == dict(truth)
    posts = [r for r in v1_site.ns.requests if r.method == "POST"]
    assert len(posts) == 1  # 240 readings: one batch
    dates = [e["date"] for e in posts[0].body]
    assert dates == sorted(dates)


# --- no double density, no second copy --------------------------------------------------------------


def test_nothing_within_150_s_of_12_hours_another_uploader_holds(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime(2026, 11, 14, 0, 0, tzinfo=UTC)
    spec = ExportSpec(sensors=(Sensor("FreeStyle Libre 3", "5114dd15-f167-41ab-b12a-801e1604ed21", start, 36, 5),))
    path, truth = _export(tmp_path, spec)
    # Another uploader (xDrip+) already sent 12 hours, one reading a minute, 20 seconds off the minute.
    held_from = int((start + timedelta(hours=12)).timestamp())
    held = [held_from + 20 + 60 * n for n in range(12 * 60)]
    for t in held:
        site.ns.add_entry({"type": "sgv", "sgv": 111, "date": t * 1000, "device": "xDrip-LibreReceiver"})
    code, out, err = site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 0, err
    stored = site.stored()
    imported = {t: v for t, v in stored.items() if v != 111 or t not in set(held)}
    assert all(min(abs(t - h) for h in held) > 150 for t in imported)  # none next to the other uploader's
    expected = {t: v for t, v in truth if min(abs(t - h) for h in held) > 150}
    assert imported == expected and len(expected) == len(truth) - 145  # 12 h at 5 minutes, both ends included
    assert "already there: 145 readings" in out
    # 720 entries plus the export's: the read took more than one page only if it had to; either way one read.
    assert site.ns.count("/api/v1/entries/sgv.json", "GET") + site.ns.count("/api/v3/entries", "GET") >= 1


def test_a_second_import_of_the_same_file_stores_nothing(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = _export(tmp_path, AUTUMN)
    assert site.run(capsys, str(path), "--timezone", "Europe/Berlin")[0] == 0
    before = site.ns.sgv_entries()
    site.ns.clear_requests()
    code, out, _ = site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 0
    assert site.ns.count(method="POST") == 0  # nothing was even sent
    assert site.ns.sgv_entries() == before
    assert "imported: 0 readings" in out and f"already there: {len(truth)} readings" in out
    assert "span of the file's readings: 2026-10-24 22:00 CEST to 2026-10-25 08:45 CET" in out
    assert "readings per day" not in out


def test_the_read_of_what_is_there_pages_through_a_long_span(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nightscout holds 2,500 entries over the file's span (more than one page of 1,000): each one is seen."""
    start = datetime(2026, 11, 10, 0, 0, tzinfo=UTC)
    spec = ExportSpec(sensors=(Sensor("FreeStyle Libre 3", "5114dd15-f167-41ab-b12a-801e1604ed22", start, 240, 5),))
    path, truth = _export(tmp_path, spec)
    for t, _ in truth[:2500]:
        site.ns.add_entry({"type": "sgv", "sgv": 99, "date": (t + 30) * 1000, "device": "other"})
    code, out, err = site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 0, err
    reads = site.ns.count("/api/v1/entries/sgv.json", "GET") + site.ns.count("/api/v3/entries", "GET")
    assert reads == 3
    assert "already there: 2,500 readings" in out
    assert f"imported: {len(truth) - 2500:,} readings" in out
    assert len(site.ns.sgv_entries()) == len(truth)


# --- dry run, progress ----------------------------------------------------------------------------


def test_dry_run_prints_the_summary_and_a_chart_and_sends_nothing(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, truth = _export(tmp_path, AUTUMN)
    code, out, _ = site.run(capsys, str(path), "--timezone", "Europe/Berlin", "--dry-run")
    assert code == 0
    assert site.ns.count(method="POST") == 0 and site.ns.sgv_entries() == []
    assert f"would import: {len(truth)} readings" in out
    assert "readings per day to import: 24 on average over 2 days (fewest 8, most 40)" in out
    assert "days it would fill" in out and "2026-10-24 " in out and "2026-10-25 " in out
    assert "█" in out and "dry run: nothing was sent to Nightscout" in out


# --- refusals -------------------------------------------------------------------------------------


def test_a_missing_timezone_is_refused_with_an_example(
    v1_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _export(tmp_path, AUTUMN)
    code, out, err = v1_site.run(capsys, str(path))
    assert code == 2 and out == ""
    assert "add --timezone" in err and "--timezone Europe/Berlin" in err
    assert v1_site.ns.requests == []
    code, _, err = v1_site.run(capsys, str(path), "--timezone", "Mars/Olympus")
    assert code == 2 and "not a time zone" in err


def test_an_unrecognisable_file_is_refused_showing_its_first_columns(
    v1_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.csv"
    path.write_text("Index,Timestamp (YYYY-MM-DDThh:mm:ss),Event Type,Glucose Value (mg/dL)\r\n1,,EGV,105\r\n")
    code, _, err = v1_site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 2
    assert "is not a LibreView glucose export" in err and "'Index', 'Timestamp (YYYY-MM-DDThh:mm:ss)'" in err
    assert v1_site.ns.requests == []


def test_dates_that_do_not_show_the_order_need_date_format(
    v1_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """24-hour times on the 1st to the 12th of a month: 05-11 could be 5 November or 11 May."""
    spec = ExportSpec(
        sensors=(Sensor("FreeStyle Libre 2", "MAAA123-A4567", datetime(2026, 11, 5, 6, 0, tzinfo=UTC), 6, 15),),
        date_format=DAY_FIRST_FORMAT,
        extras=False,
    )
    path, truth = _export(tmp_path, spec)
    code, _, err = v1_site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 2 and "--date-format DD-MM-YYYY" in err
    assert v1_site.ns.requests == []
    code, _, err = v1_site.run(capsys, str(path), "--timezone", "Europe/Berlin", "--date-format", "DD-MM-YYYY")
    assert code == 0, err
    assert v1_site.stored() == dict(truth)


def test_a_site_that_refuses_the_token_stops_the_import(
    v1_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = _export(tmp_path, AUTUMN)
    code, _, err = v1_site.run(
        capsys, str(path), "--timezone", "Europe/Berlin", NIGHTSCOUT_API_TOKEN="wrong-secret-000000"
    )
    assert code == 1 and "401" in err
    assert v1_site.ns.sgv_entries() == []
    assert "wrong-secret-000000" not in err


def test_missing_nightscout_settings_are_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = _export(tmp_path, AUTUMN)
    code = cli.main(["import-csv", str(path), "--timezone", "Europe/Berlin"], env={}, clock=lambda: NOW.timestamp())
    err = capsys.readouterr().err
    assert code == 2
    assert "NIGHTSCOUT_URL is not set." in err and "NIGHTSCOUT_API_TOKEN is not set." in err


# --- the stack's secret ---------------------------------------------------------------------------


def test_secret_id_and_connection_pick_the_persons_site(
    harness: Harness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TARGETS secret (moto): --connection sends the export to that person's Nightscout and no other."""
    from aws_lambda_powertools.utilities import parameters

    h = harness
    h.provision()
    other = NightscoutStandIn(h.clock).start()
    try:
        child, sibling = "8b6e4d2c-1a3f-4c5e-9d7b-2f0a6c8e4b13", "1a2b3c4d-1a3f-4c5e-9d7b-2f0a6c8e4b13"
        h.secret_targets(
            [
                {"LINK_UP_CONNECTION": sibling, "NIGHTSCOUT_URL": other.base_url, "NIGHTSCOUT_API_TOKEN": SECRET},
                {"LINK_UP_CONNECTION": child, "NIGHTSCOUT_URL": h.ns.base_url, "NIGHTSCOUT_API_TOKEN": h.ns_token},
            ]
        )
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        start = datetime.fromtimestamp(h.clock(), tz=UTC) - timedelta(days=2)
        spec = ExportSpec(sensors=(Sensor("FreeStyle Libre 3", "5114dd15-f167-41ab-b12a-801e1604ed23", start, 6, 5),))
        path, truth = _export(tmp_path, spec)
        argv = ["import-csv", str(path), "--timezone", "Europe/Berlin", "--secret-id", h.secret_arn]
        assert cli.main(argv, env={}, clock=h.clock) == 2
        assert "add --connection" in capsys.readouterr().err
        assert cli.main([*argv, "--connection", child], env={}, clock=h.clock) == 0, capsys.readouterr().err
        assert {int(d["date"]) // 1000 for d in h.ns.sgv_entries()} == {t for t, _ in truth}
        assert other.sgv_entries() == [] and other.requests == []
    finally:
        other.stop()


def test_a_failed_upload_says_to_run_again_and_the_rerun_completes(
    v1_site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start = datetime(2026, 11, 14, 0, 0, tzinfo=UTC)
    spec = ExportSpec(sensors=(Sensor("FreeStyle Libre 3", "5114dd15-f167-41ab-b12a-801e1604ed24", start, 30, 5),))
    path, truth = _export(tmp_path, spec)
    v1_site.ns.fail_next(1, status=503, body="busy", path="/api/v1/entries", method="POST")
    code, _, err = v1_site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 1
    assert f"failed after 0 of {len(truth)} readings" in err and "Run the same command again" in err
    code, out, err = v1_site.run(capsys, str(path), "--timezone", "Europe/Berlin")
    assert code == 0, err
    assert f"imported: {len(truth)} readings" in out
    assert v1_site.stored() == dict(truth)
    posts = [r for r in v1_site.ns.requests if r.method == "POST" and r.status == 200]
    assert [len(r.body) for r in posts] == [288, 72]  # at most 288 per POST (v1), oldest first
