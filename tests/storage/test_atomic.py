"""Atomic writes honour the umask; dead processes' leftovers are cleaned; locks serialise processes."""

import multiprocessing as mp
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ace.storage.atomic import atomic_dir, atomic_files, atomic_path, clean_stale_parts, file_lock, write_text


def test_files_and_folders_honour_the_umask(tmp_path):
    # the module reads the umask at import: check in a fresh interpreter with umask 022 and 077
    code = ("import os, stat, sys; from ace.storage.atomic import write_text, atomic_dir; "
            "p = write_text(sys.argv[1] + '/f.txt', 'x'); "
            "ctx = atomic_dir(sys.argv[1] + '/d'); ctx.__enter__(); ctx.__exit__(None, None, None); "
            "print(oct(stat.S_IMODE(os.stat(p).st_mode)), oct(stat.S_IMODE(os.stat(sys.argv[1] + '/d').st_mode)))")
    for mask, expect in ((0o022, "0o644 0o755"), (0o077, "0o600 0o700")):
        d = tmp_path / f"m{mask:o}"
        d.mkdir()
        out = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True,
                             preexec_fn=lambda m=mask: os.umask(m))
        assert out.stdout.split() == expect.split(), out.stderr


def _die_while_writing(path):
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        os._exit(9)  # like kill -9: no clean-up runs


def test_parts_of_dead_processes_are_removed_but_not_a_live_ones(tmp_path):
    p = mp.get_context("fork").Process(target=_die_while_writing, args=(tmp_path / "sub" / "acts.parquet",))
    p.start()
    p.join()
    dead = list((tmp_path / "sub").glob("*.part"))
    assert len(dead) == 1 and not (tmp_path / "sub" / "acts.parquet").exists()
    with atomic_path(tmp_path / "live.parquet") as tmp:  # this (live) process is writing it
        tmp.write_bytes(b"x")
        removed = clean_stale_parts(tmp_path)
        assert removed == dead and tmp.exists()
    assert not dead[0].exists() and (tmp_path / "live.parquet").read_bytes() == b"x"


def _hold(path, seconds, started):
    with file_lock(path):
        started.set()
        time.sleep(seconds)


def test_file_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path):
    lock = tmp_path / "x.lock"
    ctx = mp.get_context("fork")
    started = ctx.Event()
    holder = ctx.Process(target=_hold, args=(lock, 30, started))
    holder.start()
    assert started.wait(10)
    t0 = time.monotonic()
    holder.kill()  # kill -9 while holding: the kernel releases the lock
    with file_lock(lock):
        assert time.monotonic() - t0 < 5
    holder.join()

    started2 = ctx.Event()
    holder = ctx.Process(target=_hold, args=(lock, 1.0, started2))
    holder.start()
    assert started2.wait(10)
    t0 = time.monotonic()
    with file_lock(lock):
        waited = time.monotonic() - t0
    holder.join()
    assert waited > 0.5


def test_atomic_dir_replaces_a_whole_folder(tmp_path):
    target = tmp_path / "classes" / "zebra"
    with atomic_dir(target) as d:
        write_text(d / "old_concept" / "a.txt", "1")
    with atomic_dir(target) as d:
        write_text(d / "new_concept" / "a.txt", "2")
    assert sorted(p.name for p in target.iterdir()) == ["new_concept"]
    assert not [p for p in (tmp_path / "classes").iterdir() if p.name != "zebra"]
    assert stat.S_ISDIR(os.stat(target).st_mode)


def _save_pair(name):  # what openvino.save_model does with "model.xml": model.xml and model.bin
    Path(name).with_suffix(".bin").write_bytes(b"weights")
    Path(name).write_text("<net/>")


def _die_while_saving_a_pair(path):
    with atomic_files(path) as tmp:
        tmp.with_suffix(".bin").write_bytes(b"half")
        os._exit(9)


def test_a_pair_of_files_appears_whole_or_not_at_all(tmp_path):
    xml = tmp_path / "compiled" / "key.xml"
    with atomic_files(xml) as tmp:
        assert tmp.name == "key.xml" and tmp.parent != xml.parent
        _save_pair(tmp)
    assert xml.read_text() == "<net/>" and xml.with_suffix(".bin").read_bytes() == b"weights"
    assert sorted(p.name for p in xml.parent.iterdir()) == ["key.bin", "key.xml"]

    other = tmp_path / "compiled" / "other.xml"
    with pytest.raises(RuntimeError), atomic_files(other) as tmp:
        tmp.with_suffix(".bin").write_bytes(b"half")
        raise RuntimeError("the writer failed after the .bin")
    assert sorted(p.name for p in xml.parent.iterdir()) == ["key.bin", "key.xml"]

    p = mp.get_context("fork").Process(target=_die_while_saving_a_pair, args=(other,))
    p.start()
    p.join()
    stale = [q for q in xml.parent.iterdir() if q.name.endswith(".part")]
    assert len(stale) == 1 and stale[0].is_dir() and not other.exists()
    assert clean_stale_parts(tmp_path) == stale
    assert sorted(p.name for p in xml.parent.iterdir()) == ["key.bin", "key.xml"]
