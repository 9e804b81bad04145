import numpy as np
import pytest

from ace.tasks.errors import ACEInputError
from ace.tasks.algorithm.patches import fill_uint8, make_patch, make_superpixel
from ace.tasks.algorithm.superpixels import RESOLUTIONS, dense_labels, read_masks, superpixel_masks, write_segments
from ace.storage.tables import write_table


def two_region_image(h=48, w=48):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (230, 20, 20)
    img[:, w // 2:] = (20, 20, 230)
    return img


def test_two_segment_image_gives_two_superpixels():
    img = two_region_image()
    masks, levels = superpixel_masks(img, "quickshift")
    # three resolutions find the same two halves; de-duplication keeps the first two
    assert masks.shape == (2, 48, 48) and list(levels) == [0, 0]
    halves = sorted(int(m[:, :24].all()) for m in masks)
    assert halves == [0, 1]
    assert masks.sum() == 48 * 48 and not (masks[0] & masks[1]).any()


def test_every_label_is_visited_including_the_last():
    # one segmentation whose last label (the largest id) is a real region
    img = two_region_image()
    masks, _ = superpixel_masks(img, "quickshift", param_sets=[dict(max_dist=20, ratio=1.0, kernel_size=10)])
    assert len(masks) == 2  # the original's range(segments.max()) would have found only 1


def test_jaccard_dedup_and_min_area():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    masks, levels = superpixel_masks(img, "slic")
    flat = masks.reshape(len(masks), -1).astype(float)
    inter = flat @ flat.T
    area = flat.sum(1)
    jac = inter / (area[:, None] + area[None] - inter)
    np.fill_diagonal(jac, 0)
    assert jac.max() <= 0.5
    assert area.min() > 0.001 * 40 * 40
    assert levels[0] == 0 and np.all(np.diff(levels) >= 0)


@pytest.mark.parametrize("method", list(RESOLUTIONS))
def test_all_methods_run(method):
    rng = np.random.default_rng(1)
    img = two_region_image(32, 32)
    img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
    masks, levels = superpixel_masks(img, method)
    assert len(masks) >= 2 and masks.dtype == bool and set(levels) <= {0, 1, 2}


def test_unknown_method():
    with pytest.raises(ACEInputError, match="slic"):
        superpixel_masks(two_region_image(), "grabcut")


def test_segments_table_round_trip(tmp_path):
    write_table(tmp_path / "img.parquet", image=np.stack([two_region_image(), two_region_image()[:, ::-1]]))
    out = write_segments(str(tmp_path / "img.parquet"), "quickshift", str(tmp_path / "seg.parquet"))
    masks, idx = read_masks(out)
    assert masks.shape == (4, 48, 48) and list(idx) == [0, 0, 1, 1]


def test_superpixel_bbox_includes_last_row_and_column():
    img = np.zeros((10, 10, 3), np.uint8)
    img[9, 9] = (200, 100, 50)
    mask = np.zeros((10, 10), bool)
    mask[9, 9] = True
    sp = make_superpixel(img, mask, 4, (0.5, 0.5, 0.5))
    assert sp.shape == (4, 4, 3)
    np.testing.assert_array_equal(sp.reshape(-1, 3), np.tile([200, 100, 50], (16, 1)))


def test_patch_fill_and_crop():
    img = np.full((6, 6, 3), 255, np.uint8)
    mask = np.zeros((6, 6), bool)
    mask[1:3, 2:5] = True
    patch = make_patch(img, mask, (0.0, 0.5, 1.0))
    np.testing.assert_array_equal(patch[0, 0], [0, 128, 255])
    np.testing.assert_array_equal(patch[1, 2], [255, 255, 255])
    sp = make_superpixel(img, mask, 6, (0.0, 0.5, 1.0))
    assert (sp == 255).all()  # the bounding box is exactly the mask: no fill inside
    np.testing.assert_array_equal(fill_uint8((117 / 255,) * 3), [117, 117, 117])


def dense_reference(image, method, min_area=0.001, max_jaccard=0.5):
    """The straightforward algorithm: one float mask per label, Jaccard by matrix products."""
    from ace.tasks.algorithm.superpixels import segment

    h, w = image.shape[:2]
    kept, levels = [], []
    for level, params in enumerate(RESOLUTIONS[method]):
        labels = segment(image, method, params)
        for v in np.unique(labels):
            m = (labels == v).reshape(-1).astype(float)
            if m.sum() <= min_area * h * w:
                continue
            if kept:
                prev = np.stack(kept)
                inter = prev @ m
                if np.any(inter / (prev.sum(1) + m.sum() - inter) > max_jaccard):
                    continue
            kept.append(m)
            levels.append(level)
    return np.stack(kept).reshape(-1, h, w).astype(bool), np.asarray(levels)


@pytest.mark.parametrize("method", ["slic", "watershed", "felzenszwalb"])
def test_masks_equal_the_dense_reference(method):
    rng = np.random.default_rng(3)
    img = np.clip(two_region_image(56, 56) + rng.integers(0, 60, (56, 56, 3)), 0, 255).astype(np.uint8)
    img[10:30, 5:25] = (20, 200, 20)
    masks, levels = superpixel_masks(img, method)
    ref, ref_levels = dense_reference(img, method)
    assert len(masks) > 3
    np.testing.assert_array_equal(masks, ref)
    np.testing.assert_array_equal(levels, ref_levels)


@pytest.mark.parametrize("labels", [
    [[0, 1], [2, 2]],  # already 0..n-1 (SLIC's maps): returned as they are
    [[1, 2], [3, 3]],  # from 1 (watershed's)
    [[5, 9], [9, 7]],  # gaps
    [[-2, 0], [3, -2]],  # negative
    [[4, 4], [4, 4]],  # one label
])
def test_dense_labels_equal_np_unique(labels):
    labels = np.asarray(labels)
    flat, area = dense_labels(labels)
    _, ref = np.unique(labels, return_inverse=True)
    np.testing.assert_array_equal(flat, ref.reshape(-1))
    np.testing.assert_array_equal(area, np.bincount(ref.reshape(-1)))
    assert flat.dtype == np.int64 and flat.shape == (labels.size,)


def test_write_segments_threads_equal_serial(tmp_path):
    rng = np.random.default_rng(4)
    imgs = np.clip(two_region_image(40, 40)[None] + rng.integers(0, 80, (5, 40, 40, 3)), 0, 255).astype(np.uint8)
    write_table(str(tmp_path / "imgs.parquet"), image=imgs)
    for n in (1, 2):
        write_segments(str(tmp_path / "imgs.parquet"), "slic", str(tmp_path / f"seg{n}.parquet"), n)
    m1, i1 = read_masks(str(tmp_path / "seg1.parquet"))
    m2, i2 = read_masks(str(tmp_path / "seg2.parquet"))
    np.testing.assert_array_equal(m1, m2)
    np.testing.assert_array_equal(i1, i2)
    assert sorted(set(i1.tolist())) == [0, 1, 2, 3, 4]


def test_make_patch_equals_boolean_indexing_for_images_and_batches():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (3, 9, 7, 3), dtype=np.uint8)
    masks = rng.random((3, 9, 7)) > 0.5
    fill = (0.1, 0.5, 0.9)
    expect = np.empty_like(imgs)
    expect[...] = fill_uint8(fill)
    expect[masks] = imgs[masks]
    assert np.array_equal(make_patch(imgs, masks, fill), expect)
    assert make_patch(imgs[1], masks[1], fill).dtype == np.uint8
    assert np.array_equal(make_patch(imgs[1], masks[1], fill), expect[1])


def test_packed_masks_give_the_rows_read_masks_gives(tmp_path):
    from ace.storage.tables import write_table
    from ace.tasks.algorithm.superpixels import PackedMasks, read_masks

    rng = np.random.default_rng(2)
    masks = rng.random((7, 12, 20)) > 0.5
    write_table(tmp_path / "s.parquet", {"height": 12, "width": 20}, mask=np.packbits(masks.reshape(7, -1), axis=1),
                image_index=np.array([0, 0, 1, 1, 2, 3, 3]), level=np.zeros(7, np.int64))
    path = str(tmp_path / "s.parquet")
    rows = [5, 1, 5, 3]
    packed = PackedMasks(path, rows)
    expect, idx = read_masks(path, rows)
    assert all(np.array_equal(packed.mask(r), m) for r, m in zip(rows, expect))
    assert packed.image_index(rows) == idx.tolist() == [3, 0, 3, 1]
    assert PackedMasks(path, []).image_index([]) == []
