import io

import numpy as np
import pytest
from PIL import Image

from ace.tasks.report.png import encode_png, save_png, to_uint8


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("shape", [(224, 224, 3), (1, 1, 3), (7, 13, 3), (5, 9), (3, 4, 1)])
def test_png_reads_back_pixel_for_pixel(shape):
    a = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    a[len(a) // 2:] = 255 - a[: len(a) - len(a) // 2]  # rows whose difference wraps around 0 and 255
    out = _decode(encode_png(a))
    assert out.dtype == np.uint8 and np.array_equal(out, a.reshape(out.shape))


def test_png_of_floats_and_files(tmp_path):
    x = np.linspace(0, 1, 4 * 6 * 3).reshape(4, 6, 3)
    assert np.array_equal(_decode(encode_png(x)), to_uint8(x))
    assert to_uint8(np.array([1.0, 0.0, 1.2]))[0] == 255  # 1.0 is white, not wrapped to 0
    save_png(tmp_path / "a.png", x)
    save_png(tmp_path / "b.png", x, atomic=False)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes() == encode_png(x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]  # no temporary file left


def test_flat_superpixel_images_stay_small():
    a = np.full((224, 224, 3), 117, np.uint8)
    a[60:140, 70:160] = np.random.default_rng(1).integers(0, 256, (80, 90, 3))
    assert len(encode_png(a)) < 30_000  # the fill compresses to almost nothing


@pytest.mark.parametrize("shape", [(4, 4, 4), (4, 4, 2), (0, 4, 3), (4,)])
def test_png_refuses_other_shapes(shape):
    with pytest.raises(ValueError, match="encode_png takes"):
        encode_png(np.zeros(shape, np.uint8))
