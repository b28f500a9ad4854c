"""The shipped traces are what their seeded generator writes, and read back as traces."""
from __future__ import annotations

from splitnn.cost_models.link_traces import read_trace, time_weights
from splitnn.sample_models.link_traces import TRACES, trace_csv, write_traces
from tests.helpers import REPO


def test_the_shipped_traces_are_regenerated_byte_for_byte(tmp_path):
    written = write_traces(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in (REPO / "traces").glob("*.csv"))
    for path in written:
        assert path.read_bytes() == (REPO / "traces" / path.name).read_bytes(), path.name


def test_traces_have_fades_and_read_back():
    for name, make in TRACES.items():
        steps = make()
        trace = read_trace(REPO / "traces" / f"{name}.csv")
        assert len(trace) == len(steps) and trace[0][0] == 0.0
        rates = [bps for bps, _ in time_weights(trace)]
        assert max(rates) / min(rates) > 20  # the link really moves: fades, dips, a handover
        assert trace_csv(steps).startswith("time_s,mbps\n")
