"""The OpenAI-compatible front door: requests through the plan (see docs/gateway.md)."""
