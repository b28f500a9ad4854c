"""A machines file: the machines a model can be placed over and the links between them (issue 33).

    [[machine]]
    name = "camera"          # unique (letters, digits, '-', '_', '.'); how plans and reports name it
    profile = "rockpro64"    # a built-in device profile, `host`, or a profile .toml (relative to this file)
    memory = "2GB"           # optional: its RAM, in place of the profile's; the 80% rule applies to it
    count = 4                # optional: a group of identical boards that can share a stage in tiles
    source = true            # the input arrives here and the answer returns here (exactly one machine)

    [[link]]
    between = ["camera", "edge"]   # the first machine sends at `bandwidth` (or the preset's uplink)
    preset = "wifi"                # a built-in link, or:
    bandwidth = "20Mbit"           # each way unless `downlink` (the second machine's sending rate) is given
    rtt = "10ms"
    downlink = "50Mbit"

Every problem is reported in one line naming the entry and the key. Written
by hand over tomllib: the file is small and its errors must name the entry.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splitnn.cost_models.catalog import builtin_links, load_device, load_link
from splitnn.cost_models.profiles import DeviceProfile, LinkProfile, read_toml
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.core.units import parse_bandwidth_bps, parse_bytes, parse_duration_s

MACHINE_KEYS = ("name", "profile", "memory", "count", "source")
LINK_KEYS = ("between", "preset", "bandwidth", "rtt", "downlink")


@dataclass(frozen=True)
class Machine:
    name: str
    profile: DeviceProfile  # its RAM replaced by the file's `memory` where given
    count: int = 1  # identical boards in a group
    source: bool = False

    @property
    def usable_bytes(self) -> int:
        """What a stage on this machine may hold: the profile's usable share of its RAM (80% unless the profile
        says otherwise)."""
        return self.profile.usable_ram_bytes


@dataclass(frozen=True)
class MachineLink:
    a: str
    b: str
    link: LinkProfile  # a -> b at its uplink, b -> a at its downlink


@dataclass(frozen=True)
class Machines:
    machines: tuple[Machine, ...]
    links: tuple[MachineLink, ...]
    path: str = ""  # the file they were read from

    @property
    def source(self) -> Machine:
        return next(m for m in self.machines if m.source)

    def machine(self, name: str) -> Machine:
        found = next((m for m in self.machines if m.name == name), None)
        if found is None:
            raise SplitnnError(f"no machine named '{name}' in {self.path or 'the machines file'}: "
                               f"use one of {', '.join(m.name for m in self.machines)}")
        return found

    def bps(self, sender: str, receiver: str) -> float | None:
        """The rate from `sender` to `receiver` in bits per second, None when no link joins them."""
        for entry in self.links:
            if (entry.a, entry.b) == (sender, receiver):
                return entry.link.uplink_bps
            if (entry.b, entry.a) == (sender, receiver):
                return entry.link.down_bps
        return None

    def rtt_s(self, a: str, b: str) -> float:
        return next(e.link.rtt_s for e in self.links if {e.a, e.b} == {a, b})


def read_machines(path: str | Path) -> Machines:
    """The machines file at `path`, checked: one line naming the entry and the key for each kind of mistake."""
    path = Path(path)
    if not path.is_file():
        raise SplitnnError(f"machines file '{path}' does not exist: check the path")
    data = read_toml(path, "machines file")
    unknown = sorted(set(data) - {"machine", "link"})
    if unknown:
        raise SplitnnError(f"machines file '{path}': unknown table '{unknown[0]}': use [[machine]] and [[link]]")
    entries = data.get("machine")
    if not isinstance(entries, list) or not entries:
        raise SplitnnError(f"machines file '{path}' has no [[machine]] entry: add one per machine")
    machines = tuple(_machine(path, k, entry) for k, entry in enumerate(entries, start=1))
    names = [m.name for m in machines]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise SplitnnError(f"machines file '{path}': two [[machine]] entries are named '{twice}': names must differ")
    sources = [m.name for m in machines if m.source]
    if len(sources) != 1:
        raise SplitnnError(f"machines file '{path}': {'no' if not sources else len(sources)} machines have "
                           f"source = true{' (' + ', '.join(sources) + ')' if sources else ''}: mark exactly one, "
                           "the machine the input arrives at")
    links = data.get("link", [])
    if not isinstance(links, list):
        raise SplitnnError(f"machines file '{path}': 'link' must be [[link]] entries")
    joined = tuple(_link(path, k, entry, set(names)) for k, entry in enumerate(links, start=1))
    pairs = [frozenset((e.a, e.b)) for e in joined]
    repeated = next((p for p in pairs if pairs.count(p) > 1), None)
    if repeated is not None:
        raise SplitnnError(f"machines file '{path}': two [[link]] entries join {' and '.join(sorted(repeated))}: "
                           "keep one")
    return Machines(machines, joined, str(path))


def _where(path: Path, table: str, number: int, entry: Any) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    label = f" ('{name}')" if isinstance(name, str) else ""
    return f"machines file '{path}': [[{table}]] {number}{label}"


def _machine(path: Path, number: int, entry: Any) -> Machine:
    where = _where(path, "machine", number, entry)
    if not isinstance(entry, dict):
        raise SplitnnError(f"{where} is not a table: write it as [[machine]] with keys")
    _known_keys(where, entry, MACHINE_KEYS)
    name = _required_text(where, entry, "name")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise SplitnnError(f"{where}: key 'name' may hold letters, digits, '-', '_' and '.' only (it names the "
                           "stage's folder): rename it")
    profile_name = _required_text(where, entry, "profile")
    if profile_name.endswith(".toml") and not Path(profile_name).is_absolute():
        profile_name = str(path.parent / profile_name)
    try:
        profile = load_device(profile_name)
    except SplitnnError as exc:
        raise SplitnnError(f"{where}: key 'profile': {exc}") from None
    if "memory" in entry:
        memory = _bytes(where, entry["memory"])
        profile = dataclasses.replace(profile, ram_bytes=memory)
    count = entry.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise SplitnnError(f"{where}: key 'count' must be a whole number from 1 (the boards in the group), "
                           f"not {count!r}")
    source = entry.get("source", False)
    if not isinstance(source, bool):
        raise SplitnnError(f"{where}: key 'source' must be true or false, not {source!r}")
    return Machine(name, profile, count, source)


def _link(path: Path, number: int, entry: Any, names: set[str]) -> MachineLink:
    where = _where(path, "link", number, entry)
    if not isinstance(entry, dict):
        raise SplitnnError(f"{where} is not a table: write it as [[link]] with keys")
    _known_keys(where, entry, LINK_KEYS)
    between = entry.get("between")
    if (not isinstance(between, list) or len(between) != 2 or not all(isinstance(n, str) for n in between)
            or between[0] == between[1]):
        raise SplitnnError(f"{where}: key 'between' must name two different machines, e.g. between = [\"camera\", "
                           "\"edge\"]")
    missing = [n for n in between if n not in names]
    if missing:
        raise SplitnnError(f"{where}: key 'between' names '{missing[0]}', which no [[machine]] is: use one of "
                           f"{', '.join(sorted(names))}")
    if ("preset" in entry) == ("bandwidth" in entry):
        raise SplitnnError(f"{where}: give either key 'preset' (one of {', '.join(builtin_links())}) or key "
                           "'bandwidth' (with 'rtt')")
    if "bandwidth" in entry and "rtt" not in entry:
        raise SplitnnError(f"{where}: key 'rtt' is missing: a link given by its bandwidth needs its round trip too, "
                           "e.g. rtt = \"10ms\"")
    rtt = _duration(where, "rtt", entry["rtt"]) if "rtt" in entry else None
    try:
        if "preset" in entry:
            preset = entry["preset"]
            link = load_link(str(preset), rtt_s=rtt)
        else:
            link = load_link(None, _bandwidth(where, "bandwidth", entry["bandwidth"]), rtt)
    except SplitnnError as exc:
        raise SplitnnError(f"{where}: key '{'preset' if 'preset' in entry else 'bandwidth'}': {exc}") from None
    if "downlink" in entry:
        link = dataclasses.replace(link, downlink_bps=_bandwidth(where, "downlink", entry["downlink"]))
    return MachineLink(between[0], between[1], link)


def _known_keys(where: str, entry: dict[str, Any], keys: tuple[str, ...]) -> None:
    unknown = sorted(set(entry) - set(keys))
    if unknown:
        raise SplitnnError(f"{where}: unknown key '{unknown[0]}': the keys are {', '.join(keys)}")


def _required_text(where: str, entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise SplitnnError(f"{where}: key '{key}' is missing or not text: add {key} = \"...\"")
    return value


def _bytes(where: str, value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        try:
            parsed = parse_bytes(value)
        except SplitnnError as exc:
            raise SplitnnError(f"{where}: key 'memory': {exc}") from None
        if parsed > 0:
            return parsed
    raise SplitnnError(f"{where}: key 'memory' must be a size above zero, e.g. \"2GB\", not {value!r}")


def _bandwidth(where: str, key: str, value: Any) -> float:
    """A bandwidth; a bare number is Mbit/s, as on the command line."""
    return _quantity(where, key, value, parse_bandwidth_bps, "a bandwidth, e.g. \"20Mbit\"")


def _duration(where: str, key: str, value: Any) -> float:
    """A duration; a bare number is milliseconds, as on the command line."""
    return _quantity(where, key, value, parse_duration_s, "a duration, e.g. \"10ms\"")


def _quantity(where: str, key: str, value: Any, parse: Callable[[str], float], what: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise SplitnnError(f"{where}: key '{key}' must be {what}")
    try:
        return parse(value)
    except SplitnnError as exc:
        raise SplitnnError(f"{where}: key '{key}': {exc}") from None
