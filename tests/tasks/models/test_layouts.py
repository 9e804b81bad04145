import numpy as np
import pytest
import torch

from ace.tasks.errors import ACEInputError
from ace.tasks.models.layouts import channel_mean, detect_layout, grid_sum, to_grid, token_grid


@pytest.mark.parametrize("shape, layout", [((2, 256, 14, 14), "nchw"), ((2, 14, 14, 384), "nhwc"),
                                           ((2, 7, 7, 7), "nchw"), ((2, 64, 56, 28), "nchw"),
                                           ((2, 197, 768), "tokens"), ((2, 196, 768), "tokens"), ((2, 10), "nc")])
def test_detect_layout_from_shape(shape, layout):
    assert detect_layout(shape) == layout


def test_token_grid_leaves_out_class_tokens():
    assert token_grid(197) == (1, 14, 14) and token_grid(196) == (0, 14, 14) and token_grid(50) == (1, 7, 7)
    with pytest.raises(ACEInputError, match="no square grid"):
        token_grid(300)


def test_requested_layout_must_fit():
    assert detect_layout((2, 14, 14, 14), requested="nhwc") == "nhwc"
    with pytest.raises(ACEInputError, match="--layout tokens does not fit"):
        detect_layout((2, 256, 14, 14), requested="tokens")


def test_every_layout_pools_over_the_grid_to_channels():
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(3, 5, 4, 4)).astype(np.float32)  # (N, C, h, w)
    expected_mean, expected_sum = grid.mean((2, 3)), grid.sum((2, 3))
    cls = rng.normal(size=(3, 1, 5)).astype(np.float32)
    forms = {"nchw": grid, "nhwc": grid.transpose(0, 2, 3, 1),
             "tokens": np.concatenate([cls, grid.reshape(3, 5, 16).transpose(0, 2, 1)], axis=1)}
    for layout, act in forms.items():
        np.testing.assert_allclose(to_grid(act, layout), grid)
        np.testing.assert_allclose(channel_mean(act, layout), expected_mean, rtol=1e-5)
        np.testing.assert_allclose(grid_sum(torch.from_numpy(np.ascontiguousarray(act)), layout).numpy(),
                                   expected_sum, rtol=1e-5, atol=1e-5)


def tiny_superpixels(tmp_path, size: int):
    from ace.storage.tables import write_table
    from ace.tasks.algorithm.sources import Superpixels

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (2, size, size, 3), dtype=np.uint8)
    masks = np.zeros((3, size, size), bool)
    masks[0, : size // 3, : size // 3] = masks[1, size // 4:, size // 5: size // 2] = masks[2, size // 2:, :] = True
    write_table(tmp_path / "i.parquet", image=images)
    write_table(tmp_path / "s.parquet", {"height": size, "width": size},
                mask=np.packbits(masks.reshape(3, -1), axis=1), image_index=np.array([0, 1, 1]), level=np.array([0, 0, 1]))
    return Superpixels(str(tmp_path / "i.parquet"), str(tmp_path / "s.parquet"), size, (0.5, 0.5, 0.5))


@pytest.mark.parametrize("name, layer, channels, layout", [
    ("vit_b_16", "encoder.layers.encoder_layer_6", 768, "tokens"),
    ("swin_t", "features.5", 384, "nhwc"),
    ("resnet18", "layer3", 256, "nchw"),
])
def test_transformers_embed_channels(tmp_path, name, layer, channels, layout):
    """Random-weight vit_b_16 / swin_t resolve to their layouts; superpixels and random images are embedded as
    (N, channels) in both embedding modes (not one mean per token or per row)."""
    import torchvision

    from ace.storage.tables import ArrayTable
    from ace.tasks.algorithm.embed import write_activations
    from ace.tasks.models.loader import resolve
    from ace.tasks.algorithm.pooled_embedding import write_pooled_superpixels

    torch.manual_seed(0)
    weights = tmp_path / f"{name}.pt"
    torch.save(getattr(torchvision.models, name)().state_dict(), weights)
    model = resolve(name, str(weights), None, "zebra", [layer], precision="bf16")
    assert dict(model.spec.layouts) == {layer: layout}
    sp = tiny_superpixels(tmp_path, size=model.spec.input_size)
    crop, pooled = tmp_path / "crop.parquet", tmp_path / "pooled.parquet"
    write_activations(model.spec, [layer], sp, "crop", [str(crop)], batch_size=4)
    write_pooled_superpixels(model.spec, [layer], sp.images_path, sp.segments_path, [str(pooled)], 4)
    for path in (crop, pooled):
        mean = np.asarray(ArrayTable(str(path)).read("mean"))
        assert mean.shape == (len(sp), channels) and np.isfinite(mean).all() and mean.std() > 0


def test_resolving_a_model_outside_torchvision_does_not_import_torchvision(tmp_path):
    """torchvision costs 1.5-2 s to import (it loads torch._dynamo): the demo CNN's run never needs it."""
    import subprocess
    import sys

    from ace.tasks.demo.world import CLASS_NAMES, DEMO_CLASS, DEMO_LAYER

    (tmp_path / "labels.txt").write_text("\n".join(CLASS_NAMES) + "\n")
    code = ("import sys\nfrom ace.tasks.models.loader import resolve\n"
            f"r = resolve('ace_demo_cnn', None, {str(tmp_path / 'labels.txt')!r}, {DEMO_CLASS!r}, [{DEMO_LAYER!r}])\n"
            "print(r.spec.layouts, 'torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("'nchw'),) False"), out
