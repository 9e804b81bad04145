"""What the embedding step feeds the model, and the precision it runs in."""

import numpy as np
import pytest
import torch

from ace.storage.tables import ArrayTable, write_table
from ace.tasks.algorithm.images import ImageSet
from ace.tasks.algorithm.patches import make_superpixel
from ace.tasks.models.precision import resolve_precision
from ace.tasks.algorithm.sources import ImageFiles, ImageTable, Superpixels, prefetch


def test_superpixels_are_remade_from_the_masks(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    masks = np.zeros((3, 32, 32), bool)
    masks[0, :10, :10] = masks[1, 5:, 5:20] = masks[2, 20:, :] = True
    write_table(tmp_path / "i.parquet", image=images)
    write_table(tmp_path / "s.parquet", {"height": 32, "width": 32}, mask=np.packbits(masks.reshape(3, -1), axis=1),
                image_index=np.array([0, 1, 1]), level=np.array([0, 0, 1]))
    sp = Superpixels(str(tmp_path / "i.parquet"), str(tmp_path / "s.parquet"), 16, (0.5, 0.5, 0.5))
    want = np.stack([make_superpixel(images[i], m, 16, (0.5, 0.5, 0.5)) for m, i in zip(masks, [0, 1, 1])])
    assert len(sp) == 3
    np.testing.assert_array_equal(np.concatenate(list(sp.batches(2))), want)
    np.testing.assert_array_equal(sp.rows([2, 0]), want[[2, 0]])


def test_image_files_and_tables_give_the_same_batches(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    arrays = rng.integers(0, 255, (3, 20, 20, 3), dtype=np.uint8)
    files = []
    for k, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"{k}.png")
        files.append(str(tmp_path / f"{k}.png"))
    src = ImageFiles(ImageSet("s", tuple(files), ("a", "b", "c")), 20, "squash")
    write_table(tmp_path / "t.parquet", image=arrays)
    np.testing.assert_array_equal(np.concatenate(list(src.batches(2))), arrays)
    np.testing.assert_array_equal(np.concatenate(list(ImageTable(str(tmp_path / "t.parquet")).batches(2))), arrays)
    assert src.key == ImageFiles(ImageSet("other name", ("x",) * 3, ("a", "b", "c")), 20, "squash").key


def test_prefetch_keeps_order_and_raises_the_producers_error():
    assert list(prefetch(iter(range(50)))) == list(range(50))

    def broken():
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for x in prefetch(broken()):
            got.append(x)
    assert got == [1]


def test_precision_auto_and_explicit():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("auto", cpu) in ("bf16", "fp32")


def test_bf16_activations_are_stored_in_bf16_close_to_fp32(tmp_path):
    from dataclasses import replace

    from ace.tasks.algorithm.embed import write_activations
    from ace.tasks.models.loader import resolve_model

    imgs = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    src = ImageTable(str(write_table(tmp_path / "i.parquet", image=imgs)))
    spec = resolve_model("ace_demo_cnn")
    out = {}
    for prec in ("fp32", "bf16"):
        (path,) = write_activations(replace(spec, precision=prec), ["block3"], src, "crop", [str(tmp_path / f"{prec}.parquet")], 32)
        out[prec] = ArrayTable(path)
    assert out["bf16"].columns["act"]["dtype"] == "bfloat16" and out["fp32"].columns["act"]["dtype"] == "float32"
    a, b = out["fp32"].read("act").reshape(4, -1), out["bf16"].read("act").reshape(4, -1)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99
