"""What the embedding step feeds the model: small, hashable descriptions of image batches.

Nothing big is stored for them: superpixel images are re-made from the discovery images and the
kept masks, and random sets are decoded straight from their files, batch by batch, in a background
thread while the model runs on the previous batch. Only these descriptions travel between tasks.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ace.storage.tables import ArrayTable
from ace.tasks.algorithm.images import ImageSet, decode_image, read_images
from ace.tasks.algorithm.patches import make_superpixel
from ace.tasks.algorithm.superpixels import read_masks


@dataclass(frozen=True)
class ImageFiles:
    """The files of an image set, decoded and resized to the model input."""

    images: ImageSet
    size: int
    resize: str

    @property
    def key(self) -> list:
        return ["files", self.images.key, self.size, self.resize]

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        files = self.images.files
        for start in range(0, len(files), batch_size):
            yield np.stack([decode_image(f, self.size, self.resize) for f in files[start:start + batch_size]])


@dataclass(frozen=True)
class ImageTable:
    """The images of a (decoded) images table."""

    path: str

    @property
    def key(self) -> list:
        return ["table", self.path]

    def __len__(self) -> int:
        return ArrayTable(self.path).num_rows

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for batch in ArrayTable(self.path).iter_batches(["image"]):
            for start in range(0, len(batch["image"]), batch_size):
                yield batch["image"][start:start + batch_size]


@dataclass(frozen=True)
class Superpixels:
    """Every kept segment of the discovery images as a superpixel image: its bounding box, pixels
    outside the mask filled, resized to the model input (:func:`~ace.tasks.algorithm.patches.make_superpixel`).
    Row ``i`` is row ``i`` of the segments table."""

    images_path: str
    segments_path: str
    size: int
    fill: tuple[float, float, float]

    @property
    def key(self) -> list:
        return ["superpixels", self.images_path, self.segments_path, self.size, list(self.fill)]

    def __len__(self) -> int:
        return ArrayTable(self.segments_path).num_rows

    def rows(self, rows, images: np.ndarray | None = None) -> np.ndarray:
        """The superpixel images of the given rows (uint8, (len(rows), size, size, 3))."""
        images = read_images(self.images_path) if images is None else images
        masks, idx = read_masks(self.segments_path, rows)
        if not len(masks):
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.stack([make_superpixel(images[i], m, self.size, self.fill) for m, i in zip(masks, idx)])

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        images = read_images(self.images_path)
        n = len(self)
        for start in range(0, n, batch_size):
            yield self.rows(np.arange(start, min(start + batch_size, n)), images)


def prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a background thread, ``depth`` items ahead (decoding and resizing release the
    GIL, so they overlap with the model's forward pass)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []
    stop = threading.Event()

    def work():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            failure.append(e)
        finally:
            q.put(done)

    thread = threading.Thread(target=work, daemon=True, name="ace-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(0.05)
