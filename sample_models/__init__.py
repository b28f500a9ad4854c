"""Deterministic builders of the reference networks (never committed as files)."""
from __future__ import annotations

from splitnn.sample_models.catalog import SAMPLES, build_sample

__all__ = ["SAMPLES", "build_sample"]
