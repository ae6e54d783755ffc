"""Command line: ``python -m gpu_probe measure|run|watch``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__

EXIT_USAGE, EXIT_MEASURE, EXIT_UPLOAD = 2, 3, 4


def _lengths(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if len(set(vals)) < 2 or min(vals) < 1:
        raise argparse.ArgumentTypeError("need at least two distinct positive lengths")
    return vals


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return v


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0.1 <= v <= 3600:
        raise argparse.ArgumentTypeError("must be between 0.1 and 3600 seconds")
    return v


def _cluster_id(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a cluster id is a positive integer, got {text!r}")
    return int(text)


def _server_id(text: str) -> str:
    if not text or len(text) > 128 or "/" in text:
        raise argparse.ArgumentTypeError("a server id is 1 to 128 characters, without '/'")
    return text


def _base_url(text: str) -> str:
    from urllib.parse import urlparse
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise argparse.ArgumentTypeError(f"expected the service's http(s) base URL, e.g. http://planner:8000, "
                                         f"got {text!r}")
    return text


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model and device")
    g.add_argument("--model", default="llama-2-7b", metavar="PRESET|config.json",
                   help="built-in preset (llama-2-7b, llama-2-70b, llama-3-8b, mistral-7b, bloom-176b) "
                        "or a path to a Hugging Face style config.json; weights are random, nothing is "
                        "downloaded (default: %(default)s)")
    g.add_argument("--dtype", choices=["fp32", "fp16", "bf16", "int8", "nf4"],
                   help="weight dtype (default: the model's). int8/nf4 report analytic weight sizes and "
                        "time an fp16 block (bf16 on CPU) because bitsandbytes is not used")
    g.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                   help="where to measure; auto picks cuda when torch sees a GPU (default: %(default)s)")
    g.add_argument("--device-index", type=int, default=0, help="CUDA device index (default: %(default)s)")
    g.add_argument("--threads", type=_positive_int,
                   help="torch CPU threads (default: torch's choice); matters for --device cpu")

    g = p.add_argument_group("workload (for the derived planner figures)")
    g.add_argument("--input-tokens", type=_positive_int, default=2000,
                   help="mean prompt length l_in for block_time_s/comm_time_s (default: %(default)s)")
    g.add_argument("--output-tokens", type=_positive_int, default=20,
                   help="mean generated tokens l_out (default: %(default)s)")
    g.add_argument("--max-tokens", type=_positive_int, default=2048,
                   help="tokens of KV cache per sequence for cache_size_gb (default: %(default)s)")
    g.add_argument("--reserve-gb", type=float, default=2.0,
                   help="memory kept back from blocks (runtime, fragmentation); "
                        "memory_gb = total - reserve (default: %(default)s)")

    g = p.add_argument_group("measurement")
    g.add_argument("--prefill-lengths", type=_lengths, metavar="N,N,...",
                   help="input lengths for the prefill sweep (default: 128..2048 on CUDA, 32,128,512 on CPU)")
    g.add_argument("--decode-contexts", type=_lengths, metavar="N,N,...",
                   help="context lengths for the decode sweep (default: 128..2048 on CUDA, 64,512,2048 on CPU)")
    g.add_argument("--warmup", type=int, help="untimed calls per point (default: 3 on CUDA, 1 on CPU)")
    g.add_argument("--repeats", type=_positive_int, help="timed calls per point (default: 10 on CUDA, 5 on CPU)")
    g.add_argument("--activation-tokens", type=_positive_int,
                   help="prefill length for the peak activation measurement, CUDA only "
                        "(default: --input-tokens, capped at the model's max length)")
    g.add_argument("--max-batch", type=_positive_int, metavar="N",
                   help="largest batch of the batch-slowdown sweep: decode steps of 1, 2, 4, ... N sequences at "
                        "the workload's mean decode context (l_in + l_out/2), fewer if their KV would take over "
                        "half the free memory; 1 skips the sweep (default: 256 on CUDA, 32 on CPU)")
    g.add_argument("--seed", type=int, default=0, help="seed for the random weights and inputs")
    g.add_argument("--cache-dir", type=Path,
                   help="measurement cache directory (default: ~/.cache/chainplan-probe)")
    g.add_argument("--remeasure", action="store_true",
                   help="measure again even if a cached measurement exists (and refresh the cache)")
    g.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")

    g = p.add_argument_group("network")
    g.add_argument("--peer", action="append", default=[], metavar="HOST:PORT",
                   help="a peer server to time TCP round trips to; repeatable")
    g.add_argument("--rtt-samples", type=_positive_int, default=10,
                   help="round trips per target (default: %(default)s)")
    g.add_argument("--network-timeout", type=float, default=3.0,
                   help="seconds before a connect or request counts as failed (default: %(default)s)")

    g = p.add_argument_group("output")
    g.add_argument("--output", type=Path, metavar="FILE", help="also write the report JSON to FILE")
    g.add_argument("--quiet", action="store_true", help="no progress messages on stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpu_probe",
        description="chainplan GPU probe: measure one decoder block's memory and speed and the round "
                    "trip to the service on this server, and report them so plans use measured numbers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{measure,run,watch}")

    m = sub.add_parser("measure", help="measure and print the report; sends nothing",
                       description="Measure and print the report (nothing is sent).")
    m.add_argument("--json", action="store_true", help="print the report as JSON on stdout (else a summary)")
    m.add_argument("--server-url", help="service base URL to time round trips to (optional)")
    m.add_argument("--cluster", help="cluster id to put in the report (optional)")
    m.add_argument("--server", help="server id to put in the report (optional)")
    _common(m)

    r = sub.add_parser("run", help="measure and POST the report to the service",
                       description="Measure, then POST the report to {server-url}/api/v1/probe/reports/.")
    r.add_argument("--server-url", required=True, help="service base URL, e.g. https://chainplan.example.org")
    r.add_argument("--token", required=True,
                   help="probe token of this server (POST /api/v1/clusters/{id}/servers/{server_id}/probe-token/)")
    r.add_argument("--cluster", required=True, help="cluster id this server belongs to")
    r.add_argument("--server", required=True, help="this server's server_id in the cluster")
    r.add_argument("--json", action="store_true", help="also print the report JSON on stdout")
    r.add_argument("--upload-timeout", type=float, default=30.0,
                   help="seconds to wait for the service (default: %(default)s)")
    _common(r)

    w = sub.add_parser(
        "watch", help="send heartbeats (alive or draining, free memory) to the service until stopped",
        description="Send a heartbeat every --interval seconds to "
                    "{url}/api/v1/clusters/{cluster}/servers/{server}/heartbeat/ with this server's probe token: "
                    "'up', or 'draining' while --drain-file exists or after SIGUSR1 (SIGUSR2 undoes SIGUSR1), with "
                    "the GPU's free memory (nvidia-smi; the host's without it). The service's dispatcher takes a "
                    "server whose heartbeats stop for down after its heartbeat timeout (6 s by default), so keep "
                    "the interval well below it, and drain before planned maintenance. SIGTERM or Ctrl-C stops "
                    "it (exit 0). Exit 4: the service refused the heartbeats (bad token, another server's token, "
                    "a refused body), or --once did not get its heartbeat through; otherwise an unreachable service "
                    "or a 5xx is retried. Needs neither torch nor Django.",
        epilog="example: python -m gpu_probe watch --url http://planner:8000 --cluster 3 --server gpu-a "
               "--token $PROBE_TOKEN --drain-file /run/chainplan/drain")
    w.add_argument("--url", required=True, type=_base_url, help="the service's base URL, e.g. http://planner:8000")
    w.add_argument("--cluster", required=True, type=_cluster_id, help="the cluster id this server belongs to")
    w.add_argument("--server", required=True, type=_server_id, help="this server's server_id in the cluster")
    w.add_argument("--token", default=os.environ.get("CHAINPLAN_PROBE_TOKEN"),
                   help="this server's probe token (POST /api/v1/clusters/{id}/servers/{server_id}/probe-token/); "
                        "default: $CHAINPLAN_PROBE_TOKEN, which keeps it out of the process list")
    w.add_argument("--interval", type=_interval, default=2.0,
                   help="seconds between heartbeats, 0.1 to 3600 (default: %(default)s)")
    w.add_argument("--drain-file", type=Path, metavar="PATH",
                   help="say 'draining' while this file exists (create it before maintenance)")
    w.add_argument("--device-index", type=int, default=0, help="the GPU nvidia-smi reports on (default: %(default)s)")
    w.add_argument("--timeout", type=_interval, default=5.0,
                   help="seconds to wait for the service per heartbeat (default: %(default)s)")
    w.add_argument("--once", action="store_true", help="send one heartbeat and exit (a check of the setup)")
    w.add_argument("--quiet", action="store_true", help="no messages on stderr but errors")
    return parser


def _cluster_value(text: str | None):
    # The service's cluster ids are integers; keep other strings as given.
    if text is None:
        return None
    return int(text) if text.isdigit() else text


def make_report(args, say) -> dict:
    import torch

    from . import cache as cache_mod
    from .device import device_info, resolve_device
    from .measure import DEFAULT_SWEEPS, measure_block
    from .models import resolve_model
    from .network import measure_network
    from .report import Workload, build_report

    spec = resolve_model(args.model)
    dtype = args.dtype or spec.architecture.dtype
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, args.device_index)
    info = device_info(device)
    defaults = DEFAULT_SWEEPS[device.type]
    max_len = spec.architecture.max_seq_len
    fits = (lambda n: max_len is None or n < max_len)
    prefill = args.prefill_lengths or [n for n in defaults["prefill"] if fits(n)]
    decode = args.decode_contexts or [n for n in defaults["decode"] if fits(n)]
    act = args.activation_tokens or (min(args.input_tokens, max_len) if max_len else args.input_tokens)
    # The batch sweep decodes at the context the derived b is taken at: the mean over the generated tokens.
    batch_context = round(args.input_tokens + args.output_tokens / 2)
    if max_len:
        batch_context = min(batch_context, max_len - 1)
    sweep = {"prefill": sorted(set(prefill)), "decode": sorted(set(decode)),
             "warmup": defaults["warmup"] if args.warmup is None else args.warmup,
             "repeats": args.repeats or defaults["repeats"], "activation_tokens": act,
             "seed": args.seed, "threads": torch.get_num_threads() if device.type == "cpu" else None,
             "max_batch": args.max_batch or defaults["max_batch"], "batch_context": batch_context}
    key = cache_mod.cache_key(device_kind=info.kind, device_name=info.name, model_name=spec.name,
                              architecture=spec.architecture_dict(), dtype=dtype, sweep=sweep,
                              agent_version=__version__, torch_version=torch.__version__)
    cache_dir = args.cache_dir or cache_mod.DEFAULT_DIR
    measurement = None
    if not args.no_cache and not args.remeasure:
        measurement = cache_mod.load(cache_dir, key)
        if measurement is not None:
            say(f"using cached measurement from {measurement.measured_at} (--remeasure to measure again)")
    if measurement is None:
        measurement = measure_block(spec, dtype, device, prefill_lengths=sweep["prefill"],
                                    decode_contexts=sweep["decode"], warmup=sweep["warmup"],
                                    repeats=sweep["repeats"], activation_tokens=act, seed=args.seed,
                                    max_batch=sweep["max_batch"], batch_context=batch_context, progress=say)
        if not args.no_cache:
            try:
                path = cache_mod.store(cache_dir, key, measurement)
                say(f"cached measurement in {path}")
            except OSError as exc:
                say(f"warning: could not write the cache in {cache_dir}: {exc}")
    if args.server_url or args.peer:
        say("timing round trips")
    net = measure_network(args.server_url, args.peer, args.rtt_samples, args.network_timeout)
    device_doc = info.to_dict()
    device_doc["reserve_gb"] = args.reserve_gb
    model_doc = {"name": spec.name, "source": spec.source,
                 "architecture": {**spec.architecture_dict(), "dtype": dtype,
                                  "kv_dtype": measurement.kv_dtype}}
    report = build_report(measurement=measurement, device=device_doc, model=model_doc, network=net,
                          workload=Workload(args.input_tokens, args.output_tokens, args.max_tokens,
                                            args.reserve_gb),
                          cluster=_cluster_value(args.cluster), server=args.server,
                          torch_version=torch.__version__)
    return report.to_dict()


def _batch_line(m: dict, d: dict) -> str:
    curve = d.get("batch_slowdown")
    if not curve:
        return "batch    not measured"
    return (f"batch    slowdown at ctx {m['batch_context_tokens']}: "
            + ", ".join(f"{b}: {f:.2f}x" for b, f in curve)
            + f" (batch-1 step {m['batch_decode'][0]['median_s'] * 1e3:.3f} ms)")


def summary(doc: dict) -> str:
    d, m, dv, w = doc["derived"], doc["measurement"], doc["device"], doc["workload"]
    lines = [
        f"device   {dv['kind']}: {dv['name']}  total {dv['total_memory_gb']:.2f} GB, free "
        f"{dv['free_memory_gb']:.2f} GB" + (f"  [{dv['note']}]" if dv.get("note") else ""),
        f"model    {doc['model']['name']} ({doc['model']['source']}), dtype {doc['dtype']} "
        f"(computed in {m['compute_dtype']}, KV {m['kv_dtype']})" + ("  [cached]" if m.get("cached") else ""),
        f"params   {m['param_bytes_per_block']} B/block projections ({m['param_bytes_source']}), "
        f"{m['param_bytes_per_block_total']} B with norms/biases",
        f"kv       {m['kv_bytes_per_token']:.0f} B/token/block",
        "prefill  " + ", ".join(f"{p['length']}: {p['median_s'] * 1e3:.3f} ms" for p in m["prefill"]),
        "decode   " + ", ".join(f"ctx {p['length']}: {p['median_s'] * 1e3:.3f} ms" for p in m["decode"]),
        f"fit      t_o {d['t_o_s'] * 1e3:.3f} ms, a {d['a_s_per_input_token'] * 1e6:.3f} us/input token, "
        f"b {d['b_s_per_output_token'] * 1e3:.3f} ms/output token (r2 prefill "
        f"{m['prefill_fit']['r2']:.4f}, decode {m['decode_fit']['r2']:.4f})",
        _batch_line(m, d),
        f"rtt      {doc['network']['rtt_ms']} ms",
        f"derived  block_size_gb {d['block_size_gb']:.4f}, cache_size_gb {d['cache_size_gb']:.4f} "
        f"({w['max_tokens']} tokens), block_time_s {d['block_time_s']:.4f} "
        f"({w['input_tokens']} in / {w['output_tokens']} out), comm_time_s {d['comm_time_s']}, "
        f"memory_gb {d['memory_gb']:.2f}",
    ]
    lines += [f"note     {n}" for n in m["notes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = args.quiet  # progress goes to stderr, so --json output on stdout stays clean

    def say(msg: str) -> None:
        if not quiet:
            print(f"[gpu_probe] {msg}", file=sys.stderr, flush=True)

    if args.command == "watch":
        if not args.token:
            parser.error("watch needs --token (or CHAINPLAN_PROBE_TOKEN): this server's probe token")
        from .watch import run_watch
        return run_watch(args, say)

    try:
        doc = make_report(args, say)
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_MEASURE
    except ImportError as exc:
        print(f"error: {exc} (install the probe's dependencies: torch, numpy)", file=sys.stderr)
        return EXIT_MEASURE

    from .report import validate_report
    problems = validate_report(doc)
    if args.output:
        args.output.write_text(json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
    elif args.command == "measure":
        print(summary(doc))
    if problems:
        print("error: the report is implausible:\n  " + "\n  ".join(problems), file=sys.stderr)
        return EXIT_MEASURE
    if args.command == "run":
        from .client import ProbeClientError, post_report
        try:
            answer = post_report(args.server_url, args.token, doc, timeout=args.upload_timeout)
        except ProbeClientError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_UPLOAD
        say(f"report accepted: {json.dumps(answer)}")
        if not args.json:
            print(summary(doc))
    return 0
