import numpy as np
import pytest

from ace.storage.atomic import atomic_dir, write_text
from ace.storage.keys import content_key, file_digest
from ace.storage.layout import WorkDir
from ace.storage.tables import ArrayTable, TableWriter, read_table_meta, write_table


def test_table_round_trip_and_row_subsets(tmp_path):
    path = tmp_path / "t.parquet"
    a = np.arange(10 * 2 * 3, dtype=np.float32).reshape(10, 2, 3)
    with TableWriter(path, {"layer": "x"}) as w:
        w.append(act=a[:4], name=[f"n{i}" for i in range(4)], idx=np.arange(4))
        w.append(act=a[4:], name=[f"n{i}" for i in range(4, 10)], idx=np.arange(4, 10))
    t = ArrayTable(path)
    assert t.num_rows == 10 and t.shape("act") == (2, 3) and t.meta == {"layer": "x"}
    np.testing.assert_array_equal(t.read("act"), a)
    # rows across row groups, in the order asked, with repeats
    rows = [9, 0, 5, 3, 5]
    np.testing.assert_array_equal(t.read("act", rows), a[rows])
    assert t.read("name", rows) == ["n9", "n0", "n5", "n3", "n5"]
    np.testing.assert_array_equal(t.read("idx", [2, 7]), [2, 7])
    batches = list(t.iter_batches(["act"]))
    assert [len(b["act"]) for b in batches] == [4, 6]
    assert read_table_meta(path) == {"layer": "x"}
    with pytest.raises(IndexError):
        t.read("act", [10])


def test_uint8_and_bool_dtypes_survive(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (3, 5, 5, 3), dtype=np.uint8)
    write_table(tmp_path / "i.parquet", image=img, flag=np.array([True, False, True]))
    t = ArrayTable(tmp_path / "i.parquet")
    out = t.read("image")
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)
    np.testing.assert_array_equal(t.read("flag"), [True, False, True])


def test_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError):
        with TableWriter(path) as w:
            w.append(x=np.zeros((2, 3), np.float32))
            raise RuntimeError("boom")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "c"
    with atomic_dir(target) as d:
        (d / "a.txt").write_text("1")
    with pytest.raises(ValueError):
        with atomic_dir(target) as d:
            (d / "b.txt").write_text("2")
            raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]


def test_content_keys_are_stable_and_sensitive(tmp_path):
    assert content_key("a", [1, 2], {"b": 1.5}) == content_key("a", [1, 2], {"b": 1.5})
    assert content_key("a", [1, 2]) != content_key("a", [2, 1])
    assert len(content_key("x")) == 20
    write_text(tmp_path / "f", "hello")
    assert file_digest(tmp_path / "f") == "2cf24dba5fb0a30e26e8"  # sha256("hello")
    with pytest.raises(TypeError):
        content_key(np.zeros(3))





def test_working_dir_keys_do_not_depend_on_where_it_lies():
    a, b = WorkDir("/x/wd"), WorkDir("/y/other")
    assert a.key(str(a.acts("l", "k")), 3) == b.key(str(b.acts("l", "k")), 3)
    assert a.key("/elsewhere/file", 3) != b.key("/elsewhere/other", 3)


def test_bfloat16_and_float16_columns_round_trip(tmp_path):
    import torch

    from ace.storage.tables import as_bf16_bits

    x = torch.randn(7, 3, 4)
    bits = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    write_table(tmp_path / "t.parquet", act=as_bf16_bits(bits), half=x.numpy().astype(np.float16))
    t = ArrayTable(tmp_path / "t.parquet")
    assert t.columns["act"]["dtype"] == "bfloat16" and t.shape("act") == (3, 4)
    np.testing.assert_array_equal(t.read("act"), x.to(torch.bfloat16).float().numpy())
    np.testing.assert_array_equal(t.read("act", [5, 1]), x.to(torch.bfloat16).float().numpy()[[5, 1]])
    assert t.read("half").dtype == np.float16
    write_table(tmp_path / "e.parquet", act=np.zeros((0, 3), np.float32))
    assert ArrayTable(tmp_path / "e.parquet").read("act").shape == (0, 3)
