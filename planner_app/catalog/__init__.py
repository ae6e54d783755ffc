"""Clusters (their servers) and served models: what there is to plan for."""
