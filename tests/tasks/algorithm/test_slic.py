import numpy as np
import pytest
from skimage import segmentation

from ace.tasks.algorithm import slic
from ace.tasks.algorithm.superpixels import RESOLUTIONS, segment, segment_levels


def photo_like(seed: int, h: int = 96, w: int = 80) -> np.ndarray:
    """Smooth colour ramps, a few discs and noise: SLIC finds real boundaries and ties."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:h, :w]
    img = np.stack([x / w, y / h, np.full((h, w), 0.4)], -1)
    for _ in range(4):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(6, 25)
        img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.random(3)
    return np.clip(img + rng.normal(0, 0.04, img.shape), 0, 1).astype(np.float32)


def plain(image, params):
    return segmentation.slic(image, start_label=0, channel_axis=-1, **params)


def test_the_shortcut_is_used_with_the_installed_scikit_image():
    # if this fails, a scikit-image release moved SLIC's private loop: results stay right (every
    # resolution is a plain slic call) but the shared preparation is lost; update ace.tasks.algorithm.slic
    assert slic._shortcut_usable()


@pytest.mark.parametrize("seed", range(6))
def test_labels_equal_skimage_slic_at_every_resolution(seed):
    image = photo_like(seed)
    sets = RESOLUTIONS["slic"] + [dict(n_segments=30, compactness=5.0, sigma=0.0),
                                  dict(n_segments=12, compactness=40.0, sigma=2.0, max_num_iter=3)]
    got = slic.slic_levels(image, sets)
    assert len(got) == len(sets)
    for labels, params in zip(got, sets):
        want = plain(image, params)
        assert labels.shape == image.shape[:2] and labels.dtype == want.dtype
        np.testing.assert_array_equal(labels, want)
    assert len(np.unique(got[2])) > len(np.unique(got[0])) > 3  # real segmentations, finer with more segments


def test_uint8_and_float64_images_and_a_constant_one():
    rng = np.random.default_rng(3)
    u8 = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    for image in (u8, photo_like(1).astype(np.float64), np.full((30, 30, 3), 0.5, np.float32)):
        for labels, params in zip(slic.slic_levels(image, RESOLUTIONS["slic"]), RESOLUTIONS["slic"]):
            np.testing.assert_array_equal(labels, plain(image, params))


def test_other_parameters_and_an_unusable_shortcut_fall_back_to_slic(monkeypatch):
    image = photo_like(2)
    zero = [dict(n_segments=20, slic_zero=True)]
    np.testing.assert_array_equal(slic.slic_levels(image, zero)[0], plain(image, zero[0]))
    monkeypatch.setattr(slic, "_usable", False)
    monkeypatch.setattr(slic, "_shared", lambda *a: pytest.fail("the shortcut ran although unusable"))
    np.testing.assert_array_equal(slic.slic_levels(image, RESOLUTIONS["slic"])[1], plain(image, RESOLUTIONS["slic"][1]))
    assert slic.slic_levels(image, []) == []


def test_a_nan_image_gets_slics_own_error():
    image = photo_like(0)
    image[3, 4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        slic.slic_levels(image, RESOLUTIONS["slic"])


def test_superpixels_segment_levels_equal_one_segment_call_each():
    img = (photo_like(4, 64, 64) * 255).astype(np.uint8)
    for labels, params in zip(segment_levels(img, "slic", RESOLUTIONS["slic"]), RESOLUTIONS["slic"]):
        small = {**params, "sigma": params["sigma"] * 64 / 224}  # smoothing scaled down below 224 pixels
        np.testing.assert_array_equal(labels, plain(img.astype(np.float32) / 255, small))
        np.testing.assert_array_equal(labels, segment(img, "slic", params))
    for labels, params in zip(segment_levels(img, "felzenszwalb", RESOLUTIONS["felzenszwalb"]),
                              RESOLUTIONS["felzenszwalb"]):
        np.testing.assert_array_equal(labels, segment(img, "felzenszwalb", params))
