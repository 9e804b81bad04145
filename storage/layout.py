"""The layout of an ACE working directory: :class:`WorkDir` names every path in it, :class:`ClassDir`
those of one class's report folder. ``docs/working-dir.md`` shows the tree and what each file holds.

Everything that does not depend on the class (activations, CAVs, caches) is shared by the classes
explained in the directory and keyed by content; each class's report is one folder
(:func:`class_folder`), written as a whole and replaced atomically. Nothing here deletes anything.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ace.storage.keys import canonical, content_key


def safe_name(name: str) -> str:
    """A file-system-safe version of a layer or set name (``_blocks.10`` stays readable)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def class_folder(target_class: str) -> str:
    """The folder name of a class: the name itself where it is file-safe (``zebra``, ``disc_square``),
    else its file-safe form and a short hash of the name (``fire_engine-7f3a9c``), so two distinct
    class names never share a folder."""
    safe = safe_name(target_class)
    if safe == target_class:
        return safe
    return f"{safe}-{hashlib.sha256(target_class.encode()).hexdigest()[:6]}"


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

    def key(self, *parts: Any) -> str:
        """:func:`content_key` of ``parts`` with paths inside this working directory made relative to
        it, so a working directory keeps its cache when it is moved or copied."""
        root = str(self.path).rstrip("/") + "/"

        def rel(obj: Any) -> Any:
            if isinstance(obj, str) and obj.startswith(root):
                return "wd:" + obj[len(root):]
            if isinstance(obj, dict):
                return {k: rel(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [rel(v) for v in obj]
            return obj

        return content_key(*[rel(canonical(p)) for p in parts])

    def lock(self, key: str) -> Path:
        return self.path / "locks" / f"{key}.lock"

    @property
    def code_versions(self) -> Path:
        """The steps' code versions that last wrote here (:mod:`ace.tasks.versions`)."""
        return self.path / "cache" / "versions.json"

    @property
    def runs_dir(self) -> Path:
        return self.path / "runs"

    def evaluation(self, target_class: str, key: str) -> Path:
        return self.path / "cache" / "evaluations" / class_folder(target_class) / f"{key}.json"

    @property
    def compiled_dir(self) -> Path:
        """Models cut at the layers and converted for ``--backend openvino`` (``<key>.xml``/``.bin``, ``blobs/``)."""
        return self.path / "cache" / "compiled"

    def concept_table(self, layer: str, key: str) -> Path:
        """A layer's significant concepts as ``ace explain-images`` uses them (centres, radii, CAVs)."""
        return self.path / "cache" / "concept_tables" / safe_name(layer) / f"{key}.npz"

    def image_stamp(self, target_class: str, key: str) -> Path:
        """The stamp saying an image's concept map in the class folder is current."""
        return self.path / "cache" / "image_maps" / class_folder(target_class) / f"{key}.json"

    def scan(self, key: str) -> Path:
        return self.path / "cache" / "scans" / f"{key}.json"

    def report_stamp(self, target_class: str, key: str) -> Path:
        return self.path / "cache" / "reports" / class_folder(target_class) / f"{key}.json"

    def target(self, target_class: str) -> "ClassDir":
        """The folder of one class's report."""
        return ClassDir(str(self.path / "classes" / class_folder(target_class)), target_class)

    @property
    def legacy_summary(self) -> Path:
        """Where the original script wrote its summary (a link to the first class's here)."""
        return self.path / "results_summaries" / "ace_results.txt"

    @property
    def class_index(self) -> Path:
        return self.path / "results_summaries" / "classes.tsv"

    @property
    def index_page(self) -> Path:
        """``index.html``: a link to every class's HTML report."""
        return self.path / "index.html"


@dataclass(frozen=True)
class ClassDir:
    """The report of one class: written as a whole folder, replaced atomically."""

    root: str
    target_class: str

    @property
    def path(self) -> Path:
        return Path(self.root)

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

    @property
    def evaluation_json(self) -> Path:
        return self.path / "results_summaries" / "evaluation.json"

    @property
    def images_dir(self) -> Path:
        """``images/``: the concept maps of ``ace explain-images``, one folder per layer and image."""
        return self.path / "images"

    @property
    def page(self) -> Path:
        return self.path / "index.html"

    def rebased(self, root: str | Path) -> "ClassDir":
        """The same layout under another root (the temporary folder the report is written in)."""
        return ClassDir(str(root), self.target_class)


def concept_name(target_class: str, k: int) -> str:
    """The original ACE's concept name, ``<class>_concept<k>`` (k from 1)."""
    return f"{safe_name(target_class)}_concept{k}"


def concept_folder(layer: str, concept: str) -> str:
    """``<layer>_<class>_concept<k>``, as the original ACE named concept folders."""
    return safe_name(f"{layer}_{concept}")
