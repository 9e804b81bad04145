import warnings

import numpy as np
import pytest
from PIL import Image

from ace.tasks.errors import ACEInputError
from ace.tasks.algorithm.images import decode_image, scan_image_sets, scan_source, write_images
from ace.storage.tables import ArrayTable
from tests.conftest import zebra_or_skip


def _img(path, mode="RGB", size=(40, 30), value=100):
    Image.new(mode, size, value if mode != "RGB" else (value, 0, 255 - value)).save(path)


def test_greyscale_rgba_and_palette_become_rgb(tmp_path):
    _img(tmp_path / "g.png", "L", value=77)
    Image.new("RGBA", (20, 20), (10, 20, 30, 128)).save(tmp_path / "a.png")
    Image.new("P", (20, 20), 3).save(tmp_path / "p.png")
    for name in ("g.png", "a.png", "p.png"):
        arr = decode_image(tmp_path / name, 16)
        assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(decode_image(tmp_path / "g.png", 8)[0, 0], [77, 77, 77])


def test_resize_modes(tmp_path):
    a = np.zeros((100, 200, 3), np.uint8)
    a[:, :50] = 255  # left quarter white: cropped away by the centre crop
    Image.fromarray(a).save(tmp_path / "w.png")
    squash = decode_image(tmp_path / "w.png", 32, "squash")
    crop = decode_image(tmp_path / "w.png", 32, "center_crop")
    assert squash.shape == crop.shape == (32, 32, 3)
    assert squash[:, 0].mean() == 255 and crop[:, 0].mean() == 0


def test_corrupt_file_is_skipped_with_its_name(tmp_path):
    for i in range(3):
        _img(tmp_path / f"{i}.jpg")
    (tmp_path / "1b.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="1b.jpg"):
        (s,) = scan_image_sets(tmp_path, "x", [10])
    assert [p.split("/")[-1] for p in s.files] == ["0.jpg", "1.jpg", "2.jpg"]


def test_a_truncated_jpeg_is_skipped_although_the_scan_decodes_at_one_eighth(tmp_path):
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    photo.save(tmp_path / "a_whole.jpg", quality=90)
    photo.save(tmp_path / "c_progressive.jpg", quality=90, progressive=True)
    data = (tmp_path / "a_whole.jpg").read_bytes()
    (tmp_path / "b_cut.jpg").write_bytes(data[:int(len(data) * 0.95)])  # the header intact, the last rows lost
    progressive = (tmp_path / "c_progressive.jpg").read_bytes()
    (tmp_path / "d_cut_progressive.jpg").write_bytes(progressive[:int(len(progressive) * 0.95)])
    with Image.open(tmp_path / "b_cut.jpg") as im:
        assert im.size == (640, 480)  # it opens: only decoding finds the damage
    with pytest.warns(UserWarning) as said:
        (s,) = scan_image_sets(tmp_path, "x", [10])
    assert [p.split("/")[-1] for p in s.files] == ["a_whole.jpg", "c_progressive.jpg"]
    skipped = [str(w.message) for w in said if "skipping unreadable image" in str(w.message)]
    assert len(skipped) == 2 and "b_cut.jpg" in skipped[0] and "d_cut_progressive.jpg" in skipped[1]
    assert "truncated" in skipped[0]
    assert decode_image(s.files[0], 32).shape == (32, 32, 3)  # the run decodes at full size


def test_split_is_sorted_and_consecutive(tmp_path):
    for i in range(5):
        _img(tmp_path / f"{i}.png", value=i * 10)
    a, b = scan_image_sets(tmp_path, "c", [3, 3])
    assert [p[-5:] for p in a.files] == ["0.png", "1.png", "2.png"]
    assert [p[-5:] for p in b.files] == ["3.png", "4.png"]
    assert a.key != b.key and len(a.digests) == 3


def _layout(root, n_random=2, n=4):
    for d in ["cls", "random_discovery"] + [f"random500_{i}" for i in range(n_random)]:
        (root / d).mkdir(parents=True)
        for i in range(n):
            _img(root / d / f"{i}.png", value=i)


def test_scan_source_errors_name_the_folder_and_flag(tmp_path):
    _layout(tmp_path)
    sets = scan_source(str(tmp_path), "cls", 2, max_imgs=2, min_imgs=1)
    assert len(sets.discovery) == 2 and len(sets.scoring) == 2 and len(sets.randoms) == 2
    with pytest.raises(ACEInputError, match=r"random500_2.*--num_random_exp 3"):
        scan_source(str(tmp_path), "cls", 3, 2, 1)
    with pytest.raises(ACEInputError, match="--target_class 'dog'"):
        scan_source(str(tmp_path), "dog", 2, 2, 1)
    with pytest.raises(ACEInputError, match="--source_dir"):
        scan_source(str(tmp_path / "nope"), "cls", 2, 2, 1)


def test_write_images_table(tmp_path):
    _layout(tmp_path)
    sets = scan_source(str(tmp_path), "cls", 2, 3, 1)
    out = write_images(sets.discovery, 8, "squash", str(tmp_path / "i.parquet"))
    t = ArrayTable(out)
    assert t.read("image").shape == (3, 8, 8, 3)
    assert t.read("source") == list(sets.discovery.files)


def test_zebra_greyscale_photo_is_used():
    root = zebra_or_skip()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is skipped
        sets = scan_source(str(root), "zebra", 2, 50, 30)
    names = [f.split("/")[-1] for f in sets.discovery.files]
    assert len(names) == 50 and "13.jpg" in names
    assert Image.open(root / "zebra" / "13.jpg").mode == "L"
    assert decode_image(root / "zebra" / "13.jpg", 224).shape == (224, 224, 3)


def test_16_bit_images_are_scaled_not_clipped_white(tmp_path):
    grey16 = (np.arange(40 * 30).reshape(30, 40) * 50).astype(np.uint16)  # 0 .. 59950
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    with pytest.warns(UserWarning, match="16-bit image scaled to 8 bits"):
        scan_image_sets(tmp_path, "s", [1])
    out = decode_image(tmp_path / "g16.png", 40, "squash")
    want = np.round(grey16 / 257.0)
    assert out.shape == (40, 40, 3) and out.max() == 233 and out.min() == 0
    assert np.allclose(out[..., 0].mean(), want.mean(), atol=2)  # mid-grey on average, not white


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((20, 40, 3), np.uint8)
    a[:, :20] = 255  # left half white, as stored
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "r.jpg", exif=exif, quality=95)
    out = decode_image(tmp_path / "r.jpg", 40, "squash")
    # displayed upright the image is 20 wide and 40 high with the white half on top
    assert out[:20].mean() > 200 and out[20:].mean() < 50


def test_images_over_the_pixel_limit_are_named(tmp_path, monkeypatch):
    _img(tmp_path / "big.png", size=(50, 50))
    monkeypatch.setenv("ACE_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ACEInputError, match=r"big.png is 50x50 = 2,500 pixels.*ACE_MAX_IMAGE_PIXELS"):
        scan_image_sets(tmp_path, "s", [1])
    monkeypatch.setenv("ACE_MAX_IMAGE_PIXELS", "10000")
    (s,) = scan_image_sets(tmp_path, "s", [1])
    assert len(s) == 1


def test_small_random_sets_warn_that_the_test_is_weak(tmp_path):
    _layout(tmp_path)
    with pytest.warns(UserWarning, match=r"random_discovery has only 4 usable images \(--max_imgs 10\).*weak"):
        scan_source(str(tmp_path), "cls", 2, max_imgs=10, min_imgs=1)


def test_a_folder_is_scanned_once_per_working_dir_until_it_changes(tmp_path, monkeypatch):
    import os

    import ace.tasks.algorithm.images as images
    from ace.storage.layout import WorkDir

    src = tmp_path / "photos"
    src.mkdir()
    for i in range(5):
        _img(src / f"{i}.png", value=i * 10)
    (src / "2b.png").write_bytes(b"not an image")
    memo = WorkDir(str(tmp_path / "wd")).scan
    checked = []
    usable = images._usable
    monkeypatch.setattr(images, "_usable", lambda p: checked.append(p.name) or usable(p))

    with pytest.warns(UserWarning, match="2b.png"):
        first = scan_image_sets(src, "r", [2, 2], memo=memo)
    assert len(checked) >= 5 and len(list((tmp_path / "wd" / "cache" / "scans").glob("*.json"))) == 1
    checked.clear()
    with pytest.warns(UserWarning, match="2b.png"):  # the skipped file is still named
        again = scan_image_sets(src, "r", [2, 2], memo=memo)
    assert checked == [] and again == first  # read from the record: nothing decoded or hashed
    assert [p[-5:] for p in first[1].files] == ["2.png", "3.png"]

    _img(src / "3.png", value=200, size=(41, 30))  # another picture under the same name
    os.utime(src / "3.png", ns=(1, 1))
    with pytest.warns(UserWarning, match="2b.png"):
        changed = scan_image_sets(src, "r", [2, 2], memo=memo)
    assert checked and changed[1].digests[1] != first[1].digests[1]
    assert changed[0] == first[0] and scan_image_sets(src, "r", [2, 2]) == changed  # without memo: the same


def test_a_damaged_scan_record_is_made_again(tmp_path):
    from ace.storage.layout import WorkDir

    for i in range(3):
        _img(tmp_path / f"{i}.png", value=i)
    memo = WorkDir(str(tmp_path / "wd")).scan
    first = scan_image_sets(tmp_path, "r", [3], memo=memo)
    (record,) = (tmp_path / "wd" / "cache" / "scans").glob("*.json")
    record.write_text("{truncated")
    assert scan_image_sets(tmp_path, "r", [3], memo=memo) == first
    assert record.read_text().startswith('{"sets"')
