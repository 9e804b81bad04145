"""Step 1, load images: find, check and load the images (RGB, resized to the model's input, uint8).

Greyscale, palette and RGBA images are converted to RGB (the original ACE silently dropped them);
16-bit images are scaled to 8 bits (not clipped to white); EXIF orientation is applied. Corrupt
files are skipped with a warning naming the file. Images over Pillow's decompression-bomb limit and
file names that are not UTF-8 are errors naming the file (``ACE_MAX_IMAGE_PIXELS`` raises the limit).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ace.storage.atomic import write_text
from ace.storage.keys import content_key, file_digest
from ace.storage.layout import WorkDir
from ace.storage.tables import ArrayTable, TableWriter
from ace.tasks.errors import ACEInputError
from ace.tasks.threads import ordered_map

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}


@dataclass(frozen=True)
class ImageSet:
    """A named, ordered list of image files and their content digests (no pixels)."""

    name: str
    files: tuple[str, ...]
    digests: tuple[str, ...]

    @property
    def key(self) -> str:
        return content_key("imageset", list(self.digests))

    def __len__(self) -> int:
        return len(self.files)


def list_image_files(folder: str | Path, flag: str = "--source_dir") -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ACEInputError(f"image folder {folder} does not exist: check {flag} (see README, 'Source layout')")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    for p in files:
        try:
            p.name.encode("utf-8")
        except UnicodeEncodeError:
            raise ACEInputError(f"the file name {os.fsencode(p.name)!r} in {folder} is not valid UTF-8: "
                                "rename the file") from None
    return files


# Pillow's limit; ACE checks it itself in open_image (naming the file), so Pillow's own check, which
# names nothing, is turned off
DEFAULT_MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
Image.MAX_IMAGE_PIXELS = None


def _pixel_limit() -> int | None:
    value = os.environ.get("ACE_MAX_IMAGE_PIXELS")
    if value is None:
        return DEFAULT_MAX_IMAGE_PIXELS
    return int(value) if value.strip() not in ("", "0", "none", "None") else None


def open_image(path: str | Path) -> Image.Image:
    """Open an image (lazily); one over the decompression-bomb limit is an error naming it."""
    limit = _pixel_limit()
    im = Image.open(path)
    w, h = im.size
    if limit is not None and w * h > limit:
        im.close()
        raise ACEInputError(f"image {path} is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} that guards "
                            "against decompression bombs: shrink or remove it, or raise the limit with "
                            "ACE_MAX_IMAGE_PIXELS=<pixels>")
    return im


def to_rgb(im: Image.Image, path: str | Path = "") -> Image.Image:
    """RGB with EXIF orientation applied; 16-bit and 32-bit greyscale scaled to 8 bits (Pillow's own
    conversion clips them, so a 16-bit photo would come out nearly white)."""
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and a.max(initial=0) > 255):
            a = a / 257.0
            warnings.warn(f"{path}: 16-bit image scaled to 8 bits")
        elif im.mode == "F" and a.max(initial=0) <= 1.0:
            a = a * 255.0
        im = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


def fit_image(im: Image.Image, size: int, resize: str = "squash", resample=Image.BILINEAR) -> Image.Image:
    """``im`` at size x size as :func:`decode_image` makes it (``resample=Image.NEAREST`` for label maps)."""
    if resize == "center_crop":
        short = round(size * 256 / 224)
        w, h = im.size
        scale = short / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), resample)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        return im.crop((left, top, left + size, top + size))
    if resize == "squash":
        return im.resize((size, size), resample)
    raise ValueError(f"unknown resize mode {resize!r}")


def decode_image(path: str | Path, size: int, resize: str = "squash") -> np.ndarray:
    """Decode ``path`` to a (size, size, 3) uint8 RGB array.

    ``resize="squash"`` resizes straight to size x size (bilinear, as the original ACE);
    ``"center_crop"`` resizes the short side to round(size * 256 / 224) and crops the centre.
    """
    with open_image(path) as im:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scan already warned about this file
            im = to_rgb(im, path)
        im = fit_image(im, size, resize)
        return np.asarray(im, dtype=np.uint8).copy()


def _usable(path: Path) -> bool:
    """Whether ``path`` decodes. JPEGs are decoded at 1/8 scale (libjpeg scales in the DCT: every
    byte is still read, so a truncated or damaged file fails as at full size, 6x faster for a 12 MP
    photo); the pixels the run uses are decoded again at full size (:func:`decode_image`)."""
    try:
        with open_image(path) as im:
            im.draft(im.mode, (1, 1))  # a no-op for other formats
            to_rgb(im, path).load()
        return True
    except ACEInputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        warnings.warn(f"skipping unreadable image {path} ({e}); remove or replace the file")
        return False


def scan_image_sets(folder: str | Path, name: str, counts: list[int], flag: str = "--source_dir",
                    memo: Callable[[str], Path] | None = None) -> list[ImageSet]:
    """Split the usable images of ``folder`` (sorted by file name) into consecutive sets of the
    given sizes (a set may come out smaller when the folder runs out).

    ``memo`` (a content key -> file, :meth:`ace.storage.layout.WorkDir.scan`) keeps the result per
    folder listing (names, sizes, mtimes), so the random folders are read once per working dir,
    not once per class; the unreadable files it skipped are warned about again."""
    folder = Path(folder)
    files = list_image_files(folder, flag)
    record = memo(content_key("folder-scan", str(folder.resolve()), _stamp(files), list(counts))) if memo else None
    found = _read_scan(record)
    if found is None:
        found = _scan(files, counts)
        if record is not None:
            write_text(record, json.dumps(found))
    else:
        for path in found["skipped"]:
            warnings.warn(f"skipping unreadable image {path} (found when the folder was scanned); remove or "
                          "replace the file")
    return [ImageSet(name if i == 0 else f"{name}#{i}", tuple(chosen), tuple(digests))
            for i, (chosen, digests) in enumerate(found["sets"])]


def _scan(files: list[Path], counts: list[int]) -> dict:
    sets, skipped = [], []
    # each file is checked and hashed on a thread (decoding and sha256 release the GIL), in order
    it = ordered_map(lambda p: (p, _usable(p) and file_digest(p)), files, os.cpu_count() or 1)
    for n in counts:
        chosen: list[tuple[Path, str]] = []
        for path, digest in it:
            if digest:
                chosen.append((path, digest))
                if len(chosen) == n:
                    break
            else:
                skipped.append(str(path))
        sets.append([[str(p.resolve()) for p, _ in chosen], [d for _, d in chosen]])
    it.close()
    return {"sets": sets, "skipped": skipped}


def _read_scan(record: Path | None) -> dict | None:
    if record is None or not record.is_file():
        return None
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):  # a damaged record is made again
        return None


def _stamp(files: list[Path]) -> list:
    out = []
    for p in files:
        st = os.stat(p)
        out.append([p.name, st.st_size, st.st_mtime_ns])
    return out


def folder_stamp(folder: str | Path) -> list:
    """Names, sizes and mtimes of a folder's image files: a cheap change detector for caching."""
    return _stamp(list_image_files(folder))


@dataclass(frozen=True)
class SourceSets:
    """The image sets of one ACE run (manifests only)."""

    discovery: ImageSet
    scoring: ImageSet
    random_discovery: ImageSet
    randoms: tuple[ImageSet, ...]


def _warn_if_weak(folder: Path, n: int, max_imgs: int) -> None:
    if n < max(2, max_imgs // 2):
        warnings.warn(f"{folder} has only {n} usable images (--max_imgs {max_imgs}): CAVs against it are fitted on "
                      f"{n} examples and the statistical test is weak (concepts may pass it by chance); "
                      f"add images to reach ~{max_imgs}")


def scan_source(source_dir: str, target_class: str, num_random_exp: int, max_imgs: int, min_imgs: int,
                working_dir: str | None = None) -> SourceSets:
    """Check the source layout and pick the images of a run. ``working_dir``: where each folder's scan is
    kept (shared by the classes explained there; see :func:`scan_image_sets`)."""
    memo = WorkDir(working_dir).scan if working_dir else None
    src = Path(source_dir)
    if not src.is_dir():
        raise ACEInputError(f"--source_dir {src} does not exist")
    class_dir = src / target_class
    if not class_dir.is_dir():
        raise ACEInputError(f"--target_class {target_class!r}: no folder {class_dir}; put the class images there")
    discovery, scoring = scan_image_sets(class_dir, target_class, [max_imgs, max_imgs], "--target_class", memo)
    if len(discovery) < 2:
        raise ACEInputError(f"{class_dir} has {len(discovery)} usable images: ACE needs at least 2 (use ~{max_imgs})")
    if len(discovery) < max_imgs:
        warnings.warn(f"{class_dir} has only {len(discovery)} usable images for discovery (--max_imgs {max_imgs})")
    if len(scoring) == 0:
        warnings.warn(f"{class_dir} has no images beyond the first {len(discovery)}: TCAV is scored on the discovery images")
        scoring = ImageSet(target_class + "#1", discovery.files, discovery.digests)
    rd_dir = src / "random_discovery"
    if not rd_dir.is_dir():
        raise ACEInputError(f"no folder {rd_dir}: add at least --max_imgs ({max_imgs}) random images there")
    (random_discovery,) = scan_image_sets(rd_dir, "random_discovery", [max_imgs], memo=memo)
    if len(random_discovery) < 2:
        raise ACEInputError(f"{rd_dir} has {len(random_discovery)} usable images: it needs at least 2 (use ~{max_imgs})")
    _warn_if_weak(rd_dir, len(random_discovery), max_imgs)
    if num_random_exp < 2:
        raise ACEInputError(f"--num_random_exp {num_random_exp}: the t-test needs at least 2 random sets")
    randoms = []
    for i in range(num_random_exp):
        d = src / f"random500_{i}"
        if not d.is_dir():
            raise ACEInputError(
                f"no folder {d}: --num_random_exp {num_random_exp} needs random500_0 .. random500_{num_random_exp - 1}; "
                "lower --num_random_exp or add the folder"
            )
        (rs,) = scan_image_sets(d, f"random500_{i}", [max_imgs], memo=memo)
        if len(rs) < 2:
            raise ACEInputError(f"{d} has {len(rs)} usable images: a random set needs at least 2 (use ~{max_imgs})")
        _warn_if_weak(d, len(rs), max_imgs)
        randoms.append(rs)
    return SourceSets(discovery, scoring, random_discovery, tuple(randoms))


def image_files(paths: list[str]) -> list[tuple[str, str, str]]:
    """The image files named by ``paths`` (files, or folders of images, sorted): ``(path, digest, stem)``
    each, the stem made unique (``name``, ``name-2``, ...) for the output folders."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += list_image_files(p, "the images to explain")
        elif p.is_file():
            files.append(p)
        else:
            raise ACEInputError(f"image {p} does not exist: name image files or folders of images")
    if not files:
        raise ACEInputError(f"no image files in {', '.join(map(str, paths))}: name image files or folders of images")
    out, seen = [], {}
    for f in files:
        stem = safe_stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f.stem) or "image"
        seen[safe_stem] = seen.get(safe_stem, 0) + 1
        if seen[safe_stem] > 1:
            stem = f"{safe_stem}-{seen[safe_stem]}"
        out.append((str(f.resolve()), file_digest(f), stem))
    return out


def write_images(images: ImageSet, size: int, resize: str, out: str) -> str:
    """Decode every file of ``images`` and write them as one uint8 table at ``out``."""
    with TableWriter(out, {"set": images.name, "size": size, "resize": resize}) as w:
        for start in range(0, len(images), 64):
            files = images.files[start:start + 64]
            arr = np.stack([decode_image(f, size, resize) for f in files])
            w.append(image=arr, source=list(files), digest=list(images.digests[start:start + 64]))
    return out


def read_images(path: str | Path, rows=None) -> np.ndarray:
    return ArrayTable(path).read("image", rows)
