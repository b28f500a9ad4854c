"""Option groups shared by several commands (Polygraphy-style)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def input_shape_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        metavar="[NAME:]DIMS",
        help="Fix an input's shape, e.g. x:1x3x224x224 (repeat per input; a bare 1x3x224x224 for a one-input model).",
    )(func)


def planning_inputs(device: str, server: str, link: str | None, bandwidth: str | None, rtt: str | None,
                    max_device_share: float | None, max_transfer_bytes: str | None):  # type: ignore[no-untyped-def]
    """The profiles, link and constraints that `partition` (and `run-bench --sweep`) plan with.

    A named link, else a custom one from --bandwidth, else 4G; --bandwidth/--rtt override the named link's.
    """
    from splitnn.cost_models.catalog import load_device, load_link
    from splitnn.onnxsplit.core.units import (
        parse_bandwidth_bps,
        parse_bytes,
        parse_duration_s,
    )
    from splitnn.onnxsplit.vertical.planning import Constraints

    device_profile = load_device(device)
    server_profile = load_device(server)
    the_link = load_link(
        link or (None if bandwidth else "4g"),
        parse_bandwidth_bps(bandwidth) if bandwidth else None,
        parse_duration_s(rtt) if rtt else None,
    )
    constraints = Constraints(
        device_memory_bytes=device_profile.usable_ram_bytes,
        max_device_share=max_device_share,
        max_transfer_bytes=parse_bytes(max_transfer_bytes) if max_transfer_bytes else None,
    )
    return device_profile, server_profile, the_link, constraints
