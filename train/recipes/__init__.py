"""Reproducible training recipes (e.g. the bundled default model)."""
