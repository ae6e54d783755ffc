"""exo: one pipeline instance per chain, as the shard assignments POST /instance takes."""

from __future__ import annotations

from typing import Any

from .geometry import chain_stages
from .pipeline import disjoint_section, pipeline_engines


def export_exo(plan_doc, scenario, model_path, opts) -> dict[str, Any]:
    picked, chains, sizes, memory, warnings = pipeline_engines(plan_doc, scenario, "exo")
    instances, commands = [], []
    for ch in chains:
        stages = chain_stages(ch)
        node_layers = [{"node_id": s.server, "device_rank": r, "world_size": len(stages), "start_layer": s.start,
                        "end_layer": s.start + s.count, "n_layers": sizes.num_blocks}
                       for r, s in enumerate(stages)]
        inst = {"model_id": model_path, "sharding": "Pipeline", "chain": ch["plan_index"],
                "node_layers": node_layers, "capacity": ch["capacity"]}
        instances.append(inst)
        commands.append(f"# chain {ch['plan_index']}: {' -> '.join(s.server for s in stages)}\n"
                        + "\n".join(f"#   {n['node_id']}: layers [{n['start_layer']}, {n['end_layer']}) "
                                    f"rank {n['device_rank']}/{n['world_size']}" for n in node_layers))
    warnings.append("exo chooses a ring's split by itself (in proportion to memory) when asked through "
                    "POST /place_instance; to run this split, create the instance with these pipeline shard "
                    "assignments (start_layer/end_layer per node) in POST /instance")
    notes = ["exo does not reserve KV cache per ring; 'capacity' is how many jobs the plan lets each ring hold."]
    return {"instances": instances, "commands": commands, "warnings": warnings, "notes": notes,
            "disjoint": disjoint_section(picked)}
