"""The layout of an ACE working directory.

    <working_dir>/
      acts/<layer>/<key>.parquet          activations (full tensor and channel mean) per image set
      acts/grads/<layer>/<key>.parquet    class-logit gradients of the scoring images
      cache/images/<key>.parquet          decoded, resized uint8 images of one image set
      cache/segments/<key>.parquet        kept superpixel masks of the discovery images
      cache/patches/<key>.parquet         superpixels (uint8, model input size)
      cache/clusters/<layer>/<key>.parquet cluster label and distance to centre per superpixel
      cache/concepts/<layer>/<key>.json   clusters kept as concepts
      cavs/<layer>/<random set>-<key>.npz CAVs of every concept against one random set
      concepts/images/                    the discovery images
      concepts/<layer>_concept<k>/        each concept's superpixels and patches
      results/<layer>.png                 concept galleries
      results_summaries/ace_results.txt   TCAV mean, std, p-value and CAV accuracy per concept

Nothing here deletes the working directory; files are only ever replaced atomically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


def safe_name(name: str) -> str:
    """A file-system-safe version of a layer or set name (``_blocks.10`` stays readable)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


@dataclass(frozen=True)
class WorkDir:
    root: str

    @property
    def path(self) -> Path:
        return Path(self.root)

    def images(self, key: str) -> Path:
        return self.path / "cache" / "images" / f"{key}.parquet"

    def segments(self, key: str) -> Path:
        return self.path / "cache" / "segments" / f"{key}.parquet"

    def patches(self, key: str) -> Path:
        return self.path / "cache" / "patches" / f"{key}.parquet"

    def acts(self, layer: str, key: str) -> Path:
        return self.path / "acts" / safe_name(layer) / f"{key}.parquet"

    def grads(self, layer: str, key: str) -> Path:
        return self.path / "acts" / "grads" / safe_name(layer) / f"{key}.parquet"

    def clusters(self, layer: str, key: str) -> Path:
        return self.path / "cache" / "clusters" / safe_name(layer) / f"{key}.parquet"

    def concepts_cache(self, layer: str, key: str) -> Path:
        return self.path / "cache" / "concepts" / safe_name(layer) / f"{key}.json"

    def cavs(self, layer: str, random_set: str, key: str) -> Path:
        return self.path / "cavs" / safe_name(layer) / f"{safe_name(random_set)}-{key}.npz"

    def report_stamp(self, key: str) -> Path:
        return self.path / "cache" / "reports" / f"{key}.json"

    @property
    def concept_dir(self) -> Path:
        return self.path / "concepts"

    @property
    def results_dir(self) -> Path:
        return self.path / "results"

    @property
    def summary_path(self) -> Path:
        return self.path / "results_summaries" / "ace_results.txt"

    @property
    def summary_json(self) -> Path:
        return self.path / "results_summaries" / "ace_results.json"
