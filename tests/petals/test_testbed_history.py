"""The testbed's run history: every run appends itself and the report lists every run of the same
configuration (pure: no swarm)."""

from __future__ import annotations

import json

from testbed.report import history_entry, history_lines, record_history


def _entry(servers: int, measured: float, steal: float | None = 0.02) -> dict:
    meta = {"date": "2026-12-03 12:00 UTC", "commit": "abc1234", "rate": 2.5, "cpu_steal": steal,
            "uptime_before": "load average: 0.1"}
    results = {"proposed": {"requests": 60, "completed": 60, "predicted_mean_s": 1.0, "measured_mean_s": measured,
                            "predicted_p95_s": 2.0, "measured_p95_s": 2.0 * measured, "cpu_steal": float("nan")}}
    return history_entry({"servers": servers, "requests": 60}, "bash scripts/testbed.sh", meta, results)


def test_history_keeps_every_run_and_compares_like_with_like(tmp_path):
    path = tmp_path / "testbed-history.jsonl"
    record_history(path, _entry(9, 1.05))
    record_history(path, _entry(3, 5.0))            # another configuration: not in the 9-server table
    same = record_history(path, _entry(9, 1.30, steal=None))
    assert len(path.read_text().splitlines()) == 3
    assert [round(h["algorithms"]["proposed"]["measured_mean_s"], 2) for h in same] == [1.05, 1.30]
    # NaN (a meter that could not read /proc/stat) is stored as null, so the file stays strict JSON
    for line in path.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    text = "\n".join(history_lines(same, "testbed"))
    assert "| +5.0 % / +5.0 % |" in text and "| +30.0 % / +30.0 % |" in text, text
    assert "2.0 %" in text and "n/a" in text                     # stolen share, and its absence, shown
    assert "both targets met in 1 of 2 runs" in text, text


def test_bad_settle_is_named(capsys):
    import pytest

    from testbed.cli import main
    for bad in ("-5", "nan"):
        with pytest.raises(SystemExit) as exc:
            main(["--petals-settle", bad])
        assert exc.value.code == 2
        assert "--petals-settle must be between 0 and 3600" in capsys.readouterr().err
