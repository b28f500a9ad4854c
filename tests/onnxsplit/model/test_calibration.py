"""The user's calibration inputs: stacked arrays, or a folder of images through a preprocessing."""
from __future__ import annotations

import numpy as np
import pytest

from splitnn.onnxsplit.core.errors import SplitnnError
from splitnn.onnxsplit.model.calibration import load_calibration, parse_preprocess
from splitnn.onnxsplit.model.loading import load_graph


def test_stacked_arrays_become_one_feed_per_sample(sample_path, tmp_path):
    graph = load_graph(sample_path("lenet5"))
    (name,) = graph.inputs
    shape = graph.info(name).shape
    stack = np.random.default_rng(0).random((5, *shape[1:]), dtype=np.float32)  # along the batch axis
    np.save(tmp_path / "x.npy", stack)
    feeds = load_calibration(tmp_path / "x.npy", graph)
    assert len(feeds) == 5 and all(f[name].shape == shape for f in feeds)
    assert np.array_equal(feeds[2][name][0], stack[2])
    np.savez(tmp_path / "x.npz", **{name: stack[:, None]})  # on a new first axis
    assert len(load_calibration(tmp_path / "x.npz", graph, limit=3)) == 3
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 9, 9), np.float32))
    with pytest.raises(SplitnnError, match=r"takes \[1, 1, 32, 32\]"):
        load_calibration(tmp_path / "bad.npy", graph)
    (tmp_path / "junk.npz").write_bytes(b"not numpy")
    with pytest.raises(SplitnnError, match="cannot read"):
        load_calibration(tmp_path / "junk.npz", graph)
    with pytest.raises(SplitnnError, match="does not exist"):
        load_calibration(tmp_path / "missing.npz", graph)


def test_a_folder_of_images_is_resized_scaled_and_laid_out(sample_path, tmp_path):
    from PIL import Image

    graph = load_graph(sample_path("mobilenet", 96))
    (name,) = graph.inputs
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (200, 150), (255, 0, 51)).save(folder / "a.png")
    Image.new("RGB", (64, 64), (0, 255, 0)).save(folder / "b.jpg", quality=95)
    (folder / "notes.txt").write_text("not an image: skipped")
    feeds = load_calibration(folder, graph, parse_preprocess("scale=1/255,mean=0.5,std=0.5"))
    assert len(feeds) == 2 and feeds[0][name].shape == graph.info(name).shape  # [1, 3, 96, 96]
    red = feeds[0][name][0, :, 10, 10]
    assert red == pytest.approx([1.0, -1.0, (51 / 255 - 0.5) / 0.5], abs=1e-5)
    bgr = load_calibration(folder, graph, parse_preprocess("color=bgr"))[0][name][0, :, 10, 10]
    assert bgr == pytest.approx([0.2, 0.0, 1.0], abs=1e-5)
    (folder / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(SplitnnError, match="cannot read image"):
        load_calibration(folder, graph)


def test_a_bad_preprocess_names_the_item():
    with pytest.raises(SplitnnError, match="'mean=a'"):
        parse_preprocess("scale=1/255,mean=a")
    with pytest.raises(SplitnnError, match="std of 0"):
        parse_preprocess("std=0")
    assert parse_preprocess("layout=NHWC").layout == "nhwc"


def test_a_folder_of_arrays_is_told_how_to_stack_them(sample_path, tmp_path, monkeypatch):
    """issue 30, item 9: a folder of .npy samples said `holds no sample: add some`. It says what it found and how to
    make the one file it takes, and that file then loads."""
    graph = load_graph(sample_path("lenet5"))
    folder = tmp_path / "samples"
    folder.mkdir()
    for k in range(4):
        np.save(folder / f"s{k}.npy", np.full((1, 1, 32, 32), k, np.float32))
    found = r"holds no image but 4 array file\(s\) \(s0.npy, s1.npy, s2.npy and 1 more\)"
    with pytest.raises(SplitnnError, match=found) as refused:
        load_calibration(folder, graph)
    command = str(refused.value).split('python -c "', 1)[1].split('")', 1)[0]
    monkeypatch.chdir(tmp_path)  # the program `python -c` is told to run, run here: in a namespace of its own
    exec(compile(command, "<python -c>", "exec"), {"__name__": "__main__"})
    samples = load_calibration(tmp_path / "calibration.npy", graph)
    assert [float(s["input"].max()) for s in samples] == [0.0, 1.0, 2.0, 3.0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitnnError, match="holds no sample"):  # an empty folder: nothing else to say
        load_calibration(tmp_path / "empty", graph)
