"""Chains: the unit that dispatchers, bounds and the simulator work on.

A chain is an ordered list of servers that together run blocks ``0..L-1``; each
hop runs ``blocks[i]`` consecutive blocks.  Its service time for one job is
linear in the job's token counts, so a chain carries three
coefficients and its mean service time for the scenario's mean job.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chain:
    servers: tuple[str, ...]
    blocks: tuple[int, ...]
    service_time_s: float          # mean service time T_k of one job
    capacity: int                  # c_k: jobs the chain may hold at once
    # service time of a job with (input_tokens, output_tokens) =
    #   base_s + per_input_token_s * input_tokens + per_output_token_s * output_tokens
    # For scenarios given only as mean times these are (T_k, 0, 0).
    base_s: float = 0.0
    per_input_token_s: float = 0.0
    per_output_token_s: float = 0.0

    @property
    def rate(self) -> float:
        return 1.0 / self.service_time_s

    def job_time(self, input_tokens: float, output_tokens: float) -> float:
        if self.per_input_token_s == 0.0 and self.per_output_token_s == 0.0:
            return self.service_time_s
        return (self.base_s + self.per_input_token_s * input_tokens
                + self.per_output_token_s * output_tokens)

    def to_dict(self) -> dict[str, object]:
        return {
            "servers": list(self.servers),
            "blocks": list(self.blocks),
            "service_time_s": self.service_time_s,
            "capacity": self.capacity,
        }


def sort_fastest_first(chains: list[Chain]) -> list[Chain]:
    """Chains by increasing mean service time (ties by server ids, deterministic)."""
    return sorted(chains, key=lambda ch: (ch.service_time_s, ch.servers))
