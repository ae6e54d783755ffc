"""serving.llama_cpp.launch and .gguf on bad input: each a clear one-line error, nothing started.
(Launching real chains: tests/gateway/test_llama_cpp.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.llama_cpp.gguf import main as gguf_main
from serving.llama_cpp.launch import LaunchError, main, plan_processes
from solvers.export import export_plan

BINS = {"llama-server": Path("/opt/llama/llama-server"), "rpc-server": Path("/opt/llama/ggml-rpc-server")}
PLAN = {"algorithm": "hand", "feasible": True, "arrival_rate": 0.5,
        "placement": [{"server": s, "start_block": 0 if s in ("a", "c") else 2, "num_blocks": 2, "memory_gb": 10}
                      for s in ("a", "b", "c", "d")],
        "chains": [{"servers": ["a", "b"], "blocks": [2, 2], "service_time_s": 1.0, "capacity": 2},
                   {"servers": ["c", "d"], "blocks": [2, 2], "service_time_s": 2.0, "capacity": 1}]}


def _export(**opts):
    return export_plan(PLAN, "llama.cpp", model_path="m.gguf", local_device="CPU", **opts)


def test_processes_are_the_exported_commands(tmp_path):
    exp = _export(rpc_port=50100, api_port=9100)
    procs = plan_processes(exp, bins=BINS, workdir=tmp_path, bind="server")
    assert [(p.chain, p.role, p.server, p.host, p.port) for p in procs] == [
        (0, "rpc-server", "a", "a", 50100), (0, "rpc-server", "b", "b", 50100), (0, "llama-server", "b", "b", 9100),
        (1, "rpc-server", "c", "c", 50100), (1, "rpc-server", "d", "d", 50100), (1, "llama-server", "d", "d", 9100)]
    head = procs[2].argv
    want = list(exp["engines"][0]["args"])
    want[want.index("--host") + 1] = "b"
    assert head[0] == str(BINS["llama-server"]) and head[1:] == want[1:]
    assert procs[0].argv == [str(BINS["rpc-server"]), "--host", "a", "--port", "50100"]
    # one host of a real cluster: only what runs there, listening where the export says
    mine = [p for p in plan_processes(exp, bins=BINS, workdir=tmp_path, only={"b"}) if p.here]
    assert [(p.role, p.host) for p in mine] == [("rpc-server", "0.0.0.0"), ("llama-server", "0.0.0.0")]


@pytest.mark.parametrize("export,match", [
    ({"runtime": "vllm", "engines": []}, "expected `python -m solvers export --runtime llama.cpp --json` output, got runtime 'vllm'"),
    ([1, 2], "got runtime 'list'"),
    ({"runtime": "llama.cpp", "engines": []}, "no engines"),
    ({"runtime": "llama.cpp", "engines": [{"args": ["vllm"], "servers": ["a"]}]}, r"engines\[0\]: not a llama.cpp engine row"),
    ({"runtime": "llama.cpp", "engines": [{"args": ["llama-server"], "servers": ["a"]}]}, "export the plan again"),
])
def test_what_is_not_a_llama_cpp_export_is_refused(tmp_path, export, match):
    with pytest.raises(LaunchError, match=match):
        plan_processes(export, bins=BINS, workdir=tmp_path)


def test_two_listeners_on_one_port_of_one_machine_are_refused(tmp_path):
    with pytest.raises(LaunchError, match="would both listen on port 50052 of this machine.*--bind server"):
        plan_processes(_export(), bins=BINS, workdir=tmp_path)          # every rpc-server on 0.0.0.0:50052
    with pytest.raises(LaunchError, match="--only: zz runs nothing in this export"):
        plan_processes(_export(), bins=BINS, workdir=tmp_path, only={"zz"})


def test_cli_errors_name_the_problem(tmp_path, capsys):
    assert main(["--export", str(tmp_path / "missing.json")]) == 2
    assert "error: export" in capsys.readouterr().err
    (tmp_path / "text.sh").write_text("llama-server -m m.gguf\n")
    assert main(["--export", str(tmp_path / "text.sh")]) == 2
    assert "not JSON" in capsys.readouterr().err
    (tmp_path / "e.json").write_text(json.dumps(_export()))
    assert main(["--export", str(tmp_path / "e.json"), "--bin-dir", str(tmp_path)]) == 2
    assert "run bash scripts/llama_cpp.sh" in capsys.readouterr().err
    assert gguf_main([str(tmp_path), str(tmp_path / "out.gguf")]) == 2
    assert "no config.json" in capsys.readouterr().err
