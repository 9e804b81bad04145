import numpy as np
import pytest
import torch

from ace.tasks.algorithm.pooled_embedding import mask_weights, packed_mask_weights, write_pooled_superpixels
from ace.tasks.algorithm.superpixels import unpack_masks


def _random_masks(k: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    masks = rng.random((k, size, size)) > 0.7
    masks[0] = False
    masks[0, 5:9, 100:140] = True  # a thin segment across cells
    return masks


@pytest.mark.parametrize("grid", [(14, 14), (7, 7), (28, 28)])
def test_packed_weights_equal_area_averaging(grid):
    masks = _random_masks(12, 224)
    packed = np.packbits(masks.reshape(len(masks), -1), axis=1)
    fast = packed_mask_weights(packed, (224, 224), grid)
    assert fast is not None and fast.shape == (12, *grid)
    assert float((fast - mask_weights(masks, grid)).abs().max()) < 1e-7
    assert torch.allclose(fast.sum((1, 2)), torch.ones(12))


@pytest.mark.parametrize("shape, grid", [((224, 224), (56, 56)), ((224, 224), (13, 13)), ((40, 40), (3, 3))])
def test_packed_weights_only_where_cells_are_whole_bytes(shape, grid):
    masks = _random_masks(3, shape[0])
    packed = np.packbits(masks.reshape(3, -1), axis=1)
    assert packed_mask_weights(packed, shape, grid) is None
    assert np.array_equal(unpack_masks(packed, shape), masks)


@pytest.mark.parametrize("input_size", [224, 40])  # a 14x14 grid (counted packed), a 3x3 grid (unpacked)
def test_pooled_superpixels_are_mask_weighted_means_of_the_feature_map(tmp_path, input_size):
    import torchvision

    from ace.storage.tables import ArrayTable
    from ace.tasks.algorithm.forward import layer_activations, to_input
    from ace.tasks.algorithm.images import read_images
    from ace.tasks.models.loader import get_model, resolve
    from ace.tasks.algorithm.superpixels import read_masks
    from tests.tasks.models.test_layouts import tiny_superpixels

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    spec = resolve("resnet18", str(weights), None, "zebra", ["layer3"], input_size=input_size, precision="fp32").spec
    sp = tiny_superpixels(tmp_path, size=input_size)
    out = tmp_path / "pooled.parquet"
    write_pooled_superpixels(spec, ["layer3"], sp.images_path, sp.segments_path, [str(out)], 32)
    got = np.asarray(ArrayTable(str(out)).read("act"))

    fmap = layer_activations(get_model(spec), ["layer3"], to_input(read_images(sp.images_path), spec))["layer3"]
    masks, idx = read_masks(sp.segments_path)
    expect = torch.einsum("nchw,nhw->nc", fmap[torch.from_numpy(idx)], mask_weights(masks, tuple(fmap.shape[2:])))
    assert got.shape == (3, 256)
    np.testing.assert_allclose(got, expect.numpy(), rtol=1e-5, atol=1e-6)
