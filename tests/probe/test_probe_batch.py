"""The batch-slowdown sweep: grid, memory limit, the measured curve, its report fields and their checks."""

from __future__ import annotations

import copy
import json

import pytest

from gpu_probe import cache as cache_mod, cli
from gpu_probe.measure import BATCH_MEMORY_FRACTION, batch_grid, batch_memory_limit
from gpu_probe.report import (BatchPoint, Measurement, batch_slowdown_pairs, slowdown_from_medians,
                              validate_report)
from solvers.batching import BatchSlowdown

from .conftest import BATCH_CONTEXT
from .test_probe_cache_cli import FAST
from .test_probe_report import doc  # noqa: F401 (the measured report, as it travels)

@pytest.mark.parametrize("limit,grid", [(1, [1]), (2, [1, 2]), (5, [1, 2, 4, 5]), (8, [1, 2, 4, 8]),
                                        (256, [1, 2, 4, 8, 16, 32, 64, 128, 256])])
def test_batch_grid_is_geometric_and_ends_at_the_limit(limit, grid):
    assert batch_grid(limit) == grid


def test_batch_memory_limit_counts_cache_and_gqa_copies():
    # 100 tokens of context -> 101 cached; 1000 B/token; MHA: the cache only, GQA group 4: + 4 expanded copies
    per_seq = 1000 * 101
    assert batch_memory_limit(per_seq * 40 / BATCH_MEMORY_FRACTION, 1000, 100, 1) == 40
    assert batch_memory_limit(per_seq * 5 * 40 / BATCH_MEMORY_FRACTION, 1000, 100, 4) == 40
    assert batch_memory_limit(10.0, 1000, 100, 1) == 1            # never below one sequence


def test_curve_is_normalised_and_monotone():
    # a faster 2 and a faster 8 must not make the curve decrease or start above 1: the violators are
    # pooled (isotonic regression) and the curve divided by the fitted batch-1 time
    medians = [(1, 0.010), (2, 0.0095), (4, 0.018), (8, 0.016), (16, 0.040)]
    assert slowdown_from_medians(medians) == [[1, 1.0], [2, 1.0], [4, 1.7436], [8, 1.7436], [16, 4.1026]]
    # one slow outlier early on is averaged with its neighbours (a running maximum would give 1.4 to all)
    spike = [(1, 0.010), (2, 0.014), (4, 0.010), (8, 0.010), (16, 0.011), (32, 0.020)]
    assert slowdown_from_medians(spike) == [[1, 1.0], [2, 1.125], [4, 1.125], [8, 1.125], [16, 1.125], [32, 2.0]]
    assert slowdown_from_medians(list(reversed(medians))) == slowdown_from_medians(medians)
    assert slowdown_from_medians([(1, 0.01)]) is None                 # one point: no slope
    assert slowdown_from_medians([(2, 0.01), (4, 0.02)]) is None      # no batch-1 reference


def test_cpu_measurement_gives_a_contract_curve(tiny_measurement):
    m = tiny_measurement
    assert [p.batch for p in m.batch_decode] == [1, 2, 4, 8]
    assert m.batch_context_tokens == BATCH_CONTEXT and m.batch_memory_limit >= 8
    for p in m.batch_decode:
        assert p.repeats == 5 and 0 < p.min_s <= p.p25_s <= p.median_s <= p.p75_s <= p.max_s
    pairs = batch_slowdown_pairs(m.batch_decode)
    curve = BatchSlowdown.from_pairs(pairs)                    # the scenario contract accepts it as is
    assert curve.concurrency == (1, 2, 4, 8) and curve.factors[0] == 1.0
    assert list(curve.factors) == sorted(curve.factors)
    ratios = [p.median_s / m.batch_decode[0].median_s for p in m.batch_decode]
    assert max(curve.factors) <= max(ratios) / min(ratios) + 1e-4     # + rounding to 4 decimals


def test_report_carries_the_curve_and_round_trips(doc, tiny_measurement, tmp_path):  # noqa: F811
    assert validate_report(doc) == []
    assert doc["derived"]["batch_slowdown"] == batch_slowdown_pairs(tiny_measurement.batch_decode)
    assert [p["batch"] for p in doc["measurement"]["batch_decode"]] == [1, 2, 4, 8]
    again = Measurement.from_dict(doc["measurement"])
    assert again == tiny_measurement and isinstance(again.batch_decode[0], BatchPoint)
    key = {"model": "tiny-llama", "dtype": "fp32", "k": 1}
    cache_mod.store(tmp_path, key, tiny_measurement)
    assert cache_mod.load(tmp_path, key).batch_decode == tiny_measurement.batch_decode


def test_report_without_a_sweep_is_still_valid(doc):  # noqa: F811
    # reports of older agents have neither field; --max-batch 1 gives [] and null
    old = copy.deepcopy(doc)
    del old["measurement"]["batch_decode"], old["derived"]["batch_slowdown"]
    assert validate_report(old) == []
    assert Measurement.from_dict(old["measurement"]).batch_decode == []
    old["measurement"]["batch_decode"], old["derived"]["batch_slowdown"] = [], None
    assert validate_report(old) == []


def _problems(doc, edit):
    bad = copy.deepcopy(doc)
    edit(bad)
    return validate_report(bad)


def test_implausible_batch_figures_are_rejected_naming_the_field(doc):  # noqa: F811
    def decreasing(d):
        d["derived"]["batch_slowdown"][2][1] = 0.5 * d["derived"]["batch_slowdown"][1][1]
    assert any(p.startswith("derived.batch_slowdown[2]") for p in _problems(doc, decreasing))

    def not_from_one(d):
        d["derived"]["batch_slowdown"][0] = [2, 1.0]
    assert any(p.startswith("derived.batch_slowdown[0]") for p in _problems(doc, not_from_one))

    def inconsistent(d):
        d["derived"]["batch_slowdown"][-1][1] *= 3
    assert any("does not follow from measurement.batch_decode" in p for p in _problems(doc, inconsistent))

    def unordered(d):
        pts = d["measurement"]["batch_decode"]
        pts[1], pts[2] = pts[2], pts[1]
    assert any("must ascend from 1" in p for p in _problems(doc, unordered))

    def negative(d):
        d["measurement"]["batch_decode"][1]["median_s"] = -1.0
    assert any(p.startswith("measurement.batch_decode[1].median_s") for p in _problems(doc, negative))

    def not_a_list(d):
        d["derived"]["batch_slowdown"] = "roofline"
    assert any(p.startswith("derived.batch_slowdown") for p in _problems(doc, not_a_list))


def test_cli_max_batch_bounds_the_grid(tmp_path, tiny_config, capsys):
    base = ["measure", "--json", "--model", str(tiny_config), "--no-cache", *FAST]
    assert cli.main(base + ["--max-batch", "4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [p["batch"] for p in doc["measurement"]["batch_decode"]] == [1, 2, 4]
    assert doc["measurement"]["batch_context_tokens"] == 64 + 4 // 2      # l_in + l_out / 2
    assert [b for b, _ in doc["derived"]["batch_slowdown"]] == [1, 2, 4]

    assert cli.main(base + ["--max-batch", "1"]) == 0                     # 1: no sweep, and it says so
    doc = json.loads(capsys.readouterr().out)
    assert doc["measurement"]["batch_decode"] == [] and doc["derived"]["batch_slowdown"] is None
    assert validate_report(doc) == []

    assert cli.main(["measure", "--model", str(tiny_config), "--no-cache", *FAST, "--max-batch", "2"]) == 0
    assert "batch    slowdown at ctx 66: 1: 1.00x, 2: " in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(base + ["--max-batch", "0"])
    assert "--max-batch: must be >= 1" in capsys.readouterr().err
