"""The pipeline planner (issue 33, item 2): stages over N unequal machines, exact against brute force."""
from __future__ import annotations

import re

import numpy as np
import pytest

from splitnn.cost_models.machines import Machines, read_machines
from splitnn.onnxsplit.analysis.analyze import analyze
from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.loading import load_graph
from splitnn.onnxsplit.pipeline.planning import brute_force_plan, choose_pipeline, plan_pipeline
from tests.helpers import MAGIKA, MINILM, ROMANIZER, packaged_model
from tests.onnxsplit.tiles.test_real_tiles import CORPUS_CNNS

MACHINE = '[[machine]]\nname = "{name}"\nprofile = "{profile}"\n{extra}\n'
LINK = '[[link]]\nbetween = ["{a}", "{b}"]\npreset = "{preset}"\n'


def machines_file(folder, machines, links, name="machines.toml") -> Machines:
    """A machines file of `machines` (name, profile, extra lines) and `links` (a, b, preset), read back."""
    text = "".join(MACHINE.format(name=n, profile=p, extra=e) for n, p, e in machines)
    text += "".join(LINK.format(a=a, b=b, preset=p) for a, b, p in links)
    (folder / name).write_text(text)
    return read_machines(folder / name)


@pytest.fixture(scope="module")
def three(tmp_path_factory) -> Machines:
    """A board with the input, a Raspberry Pi beside it on WiFi, a server over 4G from both."""
    return machines_file(tmp_path_factory.mktemp("m3"), [("board", "rockpro64", "source = true"),
                                                          ("pi", "raspberry-pi-4", 'memory = "1GB"'),
                                                          ("cloud", "cloud-cpu", "")],
                         [("board", "pi", "wifi"), ("board", "cloud", "4g"), ("pi", "cloud", "4g")])


@pytest.fixture(scope="module")
def four(tmp_path_factory) -> Machines:
    """The issue's four: two RockPro64 boards on WiFi (the first with little memory: 150 MB), a Raspberry Pi 4 on WiFi,
    a cloud server over 4G from the Pi."""
    return machines_file(tmp_path_factory.mktemp("m4"), [("board1", "rockpro64", 'memory = "150MB"\nsource = true'),
                                                          ("board2", "rockpro64", ""), ("pi", "raspberry-pi-4", ""),
                                                          ("cloud", "cloud-cpu", "")],
                         [("board1", "board2", "wifi"), ("board1", "pi", "wifi"), ("board2", "pi", "wifi"),
                          ("pi", "cloud", "4g")])


def _every_few(analysis, count: int = 14) -> list[int] | None:
    """All cuts of a small model; about `count` evenly spread ones of a large one (brute force stays quick)."""
    last = len(analysis.cuts) - 1
    return None if last <= 2 * count else sorted(set(np.linspace(0, last, count).astype(int).tolist()))


def _assert_dp_is_brute_force(analysis, machines: Machines) -> None:
    cuts = _every_few(analysis)
    for objective in ("latency", "throughput"):
        planned = plan_pipeline(analysis, machines, objective, cuts)
        best = brute_force_plan(analysis, machines, objective, cuts)
        assert planned.cost() == pytest.approx(best.cost(), rel=1e-9), (objective, planned.stages, best.stages)
        # For a stream, of the plans with the least period the one that answers a request soonest.
        assert planned.latency_s == pytest.approx(best.latency_s, rel=1e-9), (objective, planned.stages, best.stages)
        # The plan is whole: stages cover the order in turn, from the source, each within its machine's memory.
        assert planned.stages[0].machine == machines.source.name and planned.stages[0].start == 0
        assert planned.stages[-1].end == len(analysis.cuts) - 1
        assert all(a.end == b.start for a, b in zip(planned.stages, planned.stages[1:]))
        assert all(s.memory_bytes <= s.usable_bytes for s in planned.stages)
        assert len(set(planned.machines)) == len(planned.machines)
        assert [(h.sender, h.receiver) for h in planned.hops] == list(zip(planned.machines, planned.machines[1:]))


@pytest.mark.parametrize("name,size", [("lenet5", None), ("alexnet", 64), ("vgg16", 64), ("vgg19", 32),
                                       ("resnet18", 64), ("mobilenet", 64)])
def test_the_planner_equals_brute_force_on_every_sample(sample_path, three, four, name, size):
    analysis = analyze(load_graph(sample_path(name, size)))
    _assert_dp_is_brute_force(analysis, three)
    _assert_dp_is_brute_force(analysis, four)


CORPUS = {**{name: entry for name, entry in CORPUS_CNNS.items()},
          "magika": (lambda: packaged_model(*MAGIKA[:2]), MAGIKA[2]),
          "romanizer": (lambda: packaged_model(*ROMANIZER[:2]), ROMANIZER[2]),
          "minilm": (lambda: packaged_model(*MINILM[:2]), MINILM[2])}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_planner_equals_brute_force_on_every_corpus_model(three, four, name):
    model, shapes = CORPUS[name]
    analysis = analyze(load_graph(model(), shapes))
    _assert_dp_is_brute_force(analysis, three)
    _assert_dp_is_brute_force(analysis, four)


def test_memory_caps_push_stages_off_a_small_machine(sample_path, four):
    """VGG-16 at 64 (178 MB of weights and activations) does not fit board1's 120 MB (80% of 150 MB): board1 keeps
    only what fits."""
    analysis = analyze(load_graph(sample_path("vgg16", 64)))
    choice = choose_pipeline(analysis, four, "latency")
    assert choice.source_alone is None  # the whole model does not fit the source
    first = choice.best.stages[0]
    assert first.machine == "board1" and first.memory_bytes <= 120_000_000 and first.end < len(analysis.cuts) - 1
    assert choice.two_machines is not None and choice.best.cost() <= choice.two_machines.cost() + 1e-12


def test_a_model_that_fits_no_machine_names_the_node_and_the_bytes(sample_path, tmp_path):
    machines = machines_file(tmp_path, [("a", "rockpro64", 'memory = "30MB"\nsource = true'),
                                        ("b", "rockpro64", 'memory = "30MB"')], [("a", "b", "wifi")])
    analysis = analyze(load_graph(sample_path("vgg16", 64)))
    with pytest.raises(SplitnnError, match=re.escape("node 'fc1' alone needs")) as caught:
        plan_pipeline(analysis, machines)
    assert "24,000,000 bytes" in str(caught.value) and "give a machine more memory" in str(caught.value)


def test_the_answer_returns_by_the_fastest_route_and_more_machines_never_lose(sample_path, four):
    analysis = analyze(load_graph(sample_path("alexnet", 64)))
    for objective in ("latency", "throughput"):
        choice = choose_pipeline(analysis, four, objective)
        best = choice.best
        assert best.reply[-1].receiver == "board1" if best.reply else best.machines == ("board1",)
        assert choice.two_machines is not None and best.cost() <= choice.two_machines.cost() + 1e-12
        # The figures add up as the module doc says.
        assert best.latency_s == pytest.approx(sum(s.compute_s for s in best.stages)
                                               + sum(h.seconds for h in (*best.hops, *best.reply)))
        assert best.period_s == pytest.approx(max([s.compute_s for s in best.stages]
                                                  + [h.serialise_s for h in (*best.hops, *best.reply)]))


def test_a_group_of_boards_is_refused_until_tiles_plan_it(sample_path, tmp_path):
    machines = machines_file(tmp_path, [("boards", "rockpro64", "count = 4\nsource = true"),
                                        ("cloud", "cloud-cpu", "")], [("boards", "cloud", "4g")])
    analysis = analyze(load_graph(sample_path("lenet5")))
    with pytest.raises(SplitnnError, match="machine 'boards' is a group of 4 boards"):
        plan_pipeline(analysis, machines)
