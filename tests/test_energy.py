"""Energy estimates: the 45 nm per-operation table (seed 003), per-layer energy by hand on a small
graph, JSON overrides, the DVFS model (P = eta*alpha*C*f*V^2 + P_leak) and `lpdc analyze --energy`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from lpdc.errors import LpdcError
from lpdc.ir import Graph, TensorType
from lpdc.tools.cli import main
from lpdc.tools.energy import CpuModel, EnergyTable, best_point, dvfs, estimate, load_table


def small_graph() -> Graph:
    g = Graph("small")
    x = g.add_input("x", TensorType((1, 3, 8, 8)))
    w = g.add_const(np.ones((8, 3, 3, 3), np.float32), "w")
    y = g.op("conv", x, w, name="conv", pad=[1, 1, 1, 1])
    f = g.op("flatten", y, name="flat")
    w2 = g.add_const(np.ones((10, 512), np.float32), "fc.w")
    g.set_outputs([g.op("fully_connected", f, w2, name="fc")])
    return g


def test_default_table_is_the_seed_45nm_table():
    t = EnergyTable()
    assert (t.int_add, t.float_add, t.register_file, t.int_mult, t.float_mult, t.sram, t.dram) == (
        0.1, 0.9, 1.0, 3.1, 3.7, 5.0, 640.0)
    assert t.dram / t.float_mult == pytest.approx(173, rel=0.01)  # a DRAM word costs ~170 multiplies


def test_per_layer_energy_by_hand():
    r = estimate(small_graph(), 32)
    conv, flat, fc = r.layers
    macs = 8 * 64 * 27
    assert conv.macs == macs
    assert conv.compute_pj == pytest.approx(macs * 3.7 + (macs - 8 * 64) * 0.9)  # 26 adds per 27-term dot
    assert conv.weights_pj == pytest.approx(8 * 27 * 640)  # every weight read once from DRAM
    assert conv.activations_pj == pytest.approx((192 + 512) * 5)  # input + output words in SRAM
    assert flat.compute_pj == 0 and flat.weights_pj == 0
    assert fc.weights_pj == pytest.approx(5120 * 640) and fc.compute_pj == pytest.approx(5120 * 3.7 + 10 * 511 * 0.9)
    assert r.total() == pytest.approx(sum(x.total_pj for x in r.layers))
    assert r.activations_in == "sram" and r.dram_bytes == (216 + 5120) * 4


def test_bit_width_integer_costs_and_dram_spill():
    r16 = estimate(small_graph(), 16)
    conv = r16.layers[0]
    macs = 8 * 64 * 27
    assert conv.compute_pj == pytest.approx(macs * 3.1 + (macs - 512) * 0.1)
    assert conv.weights_pj == pytest.approx(216 * 2 / 4 * 640)  # two 16-bit weights per 32-bit access
    spill = estimate(small_graph(), 32, EnergyTable(sram_bytes=16))
    assert spill.activations_in == "dram" and spill.layers[0].activations_pj == pytest.approx((192 + 512) * 640)
    scaled = estimate(small_graph(), 32, compute_scale={"conv": 0.5})
    assert scaled.layers[0].compute_pj == pytest.approx(estimate(small_graph()).layers[0].compute_pj / 2)


def test_table_overrides_from_json(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"dram": 100.0, "cpu": {"leak_w": 0.5, "freqs_mhz": [500, 1000], "volts": [0.9, 1.1]}}))
    t = load_table(path)
    assert t.dram == 100.0 and t.float_mult == 3.7 and t.cpu.leak_w == 0.5 and t.cpu.freqs_mhz == (500.0, 1000.0)
    assert estimate(small_graph(), 32, t).layers[0].weights_pj == pytest.approx(216 * 100)
    for bad, msg in (({"dramm": 1}, "unknown entries"), ({"dram": "x"}, "numbers"), ({"dram": -1}, "non-negative"),
                     ({"cpu": {"volts": [1.0]}}, "equal length"), ([1, 2], "JSON object")):
        path.write_text(json.dumps(bad))
        with pytest.raises(LpdcError, match=msg):
            load_table(path)
    path.write_text("{")
    with pytest.raises(LpdcError, match="t.json"):
        load_table(path)


def test_dvfs_formula_and_latency_target():
    cpu = CpuModel(freqs_mhz=(500.0, 1000.0), volts=(0.8, 1.2), eta_alpha_c_nf=2.0, leak_w=1.0, ops_per_cycle=1.0,
                   mem_gbs=1.0)
    slow, fast = dvfs(10**6, 10**6, cpu, latency_s=0.003)
    assert slow.time_s == pytest.approx(1e6 / 5e8 + 1e-3) and fast.time_s == pytest.approx(1e-3 + 1e-3)
    assert slow.power_w == pytest.approx(2e-9 * 5e8 * 0.64 + 1.0)
    assert fast.power_w == pytest.approx(2e-9 * 1e9 * 1.44 + 1.0)
    assert slow.energy_j == pytest.approx(slow.power_w * slow.time_s)
    assert slow.energy_deadline_j == pytest.approx(slow.energy_j + 1.0 * (0.003 - slow.time_s))
    assert best_point([slow, fast]) is slow  # low voltage wins when both meet the target
    tight = dvfs(10**6, 10**6, cpu, latency_s=0.0025)
    assert tight[0].energy_deadline_j is None and best_point(tight) is tight[1]  # only the fast point meets it
    assert best_point(dvfs(10**6, 0, cpu, latency_s=1e-9)) is None


def test_dvfs_energy_is_convex_for_a_compute_bound_model():
    # Raspberry Pi 3 defaults: below the sweet spot leakage over the longer run dominates, above it V^2
    e = [p.energy_j for p in dvfs(10**8, 0)]
    lowest = int(np.argmin(e))
    assert 0 < lowest < len(e) - 1
    assert all(a > b for a, b in zip(e[:lowest], e[1:lowest + 1], strict=True))
    assert all(a < b for a, b in zip(e[lowest:], e[lowest + 1:], strict=False))
    assert e[-1] == max(e)  # 1.2 GHz at 1.2 V costs the most energy per inference


def test_cli_energy_table_and_json(capsys, tmp_path):
    assert main(["analyze", "zoo:tiny_cnn", "--energy", "--latency-ms", "5", "-q"]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "DVFS" in out and "least energy meeting 5.000 ms" in out
    (tmp_path / "t.json").write_text(json.dumps({"dram": 0.0}))
    assert main(["analyze", "zoo:tiny_cnn", "--energy", "--energy-table", str(tmp_path / "t.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["energy"]
    assert data["total_pj"]["weights"] == 0 and data["table_pj"]["dram"] == 0
    assert data["total_pj"]["total"] == pytest.approx(sum(x["total_pj"] for x in data["layers"]))
    assert main(["analyze", "zoo:tiny_cnn", "--energy", "--latency-ms", "-1"]) == 1
    assert "--latency-ms" in capsys.readouterr().err
