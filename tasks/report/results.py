"""A class's ACE results as Python objects: what ``ace.load`` and ``ACE(...).fit(...)`` return.

:class:`ACEResult` is read from a finished report (``classes/<class>/results_summaries/
ace_results.json``, see :mod:`ace.storage.layout`): the run, every concept with its TCAV scores,
test and direction, each concept's examples (paths, and images on demand), the random baseline,
and the SSC/SDC evaluation and ground truth where the run has them. Nothing is recomputed.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ace.storage.layout import WorkDir, concept_folder


@dataclass(frozen=True)
class ConceptResult:
    """One concept of a layer: its TCAV scores over the random sets and its test against random.

    ``examples`` are its superpixels (rows of the run's segments table), nearest to the cluster
    centre first; ``folder`` holds their PNGs (significant concepts only, else ``None``)."""

    layer: str
    name: str
    tcav_mean: float
    tcav_std: float
    p_value: float
    p_adjusted: float
    cav_accuracy: float
    significant: bool
    direction: str
    effect: float
    effect_ci: tuple[float, float]
    scores: tuple[float, ...]
    examples: tuple[int, ...] = ()
    folder: str | None = None

    def example_paths(self, kind: str = "superpixels") -> list[Path]:
        """The PNGs of its examples: ``superpixels`` (resized crops), ``patches`` (the segment in place,
        the rest filled) or ``where`` (the first 10 in their image)."""
        if self.folder is None or not (Path(self.folder) / kind).is_dir():
            return []
        return sorted((Path(self.folder) / kind).glob("*.png"))

    def example_images(self, kind: str = "superpixels", n: int | None = None) -> np.ndarray:
        """The first ``n`` (default: all) example PNGs as a uint8 array (N, H, W, 3)."""
        from PIL import Image

        paths = self.example_paths(kind)[:n]
        if not paths:
            return np.zeros((0, 0, 0, 3), np.uint8)
        return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


@dataclass(frozen=True)
class Evaluation:
    """SSC/SDC (the paper's Fig. 4): per k, the share of scoring images still predicted as the class
    (``accuracy``) and the mean class probability, with only the top-k concepts kept (``ssc``) or
    removed (``sdc``), and with as many random superpixels (``*_random``)."""

    layer: str
    concepts: tuple[str, ...]
    n_images: int
    original: dict[str, float]
    ssc: tuple[dict, ...]
    sdc: tuple[dict, ...]
    ssc_random: tuple[dict, ...]
    sdc_random: tuple[dict, ...]

    @classmethod
    def from_dict(cls, d: dict) -> "Evaluation":
        return cls(d["layer"], tuple(d["concepts"]), int(d["n_images"]), dict(d["original"]),
                   *(tuple(d[k]) for k in ("ssc", "sdc", "ssc_random", "sdc_random")))


@dataclass(frozen=True)
class ACEResult:
    """ACE's explanation of one class (see the module docstring).

    Attributes:
        target_class, class_index, model, layers: what was explained.
        concepts: every concept of every layer, significant ones first, highest mean TCAV first.
        random_baseline: per layer, random_discovery's mean TCAV, its std and mean CAV accuracy.
        n_discovery, n_scoring, scoring_accuracy: the images, and the share of scoring images the
            model predicts as the class.
        parameters: the run's parameters (as the flow received them).
        evaluation: SSC/SDC, when the run was evaluated; ground_truth: where the source has part masks.
        report_dir: the class's report folder (``index.html`` is its HTML report).
    """

    target_class: str
    class_index: int
    model: str
    layers: tuple[str, ...]
    concepts: tuple[ConceptResult, ...]
    random_baseline: dict[str, tuple[float, float, float]]
    n_discovery: int
    n_scoring: int
    scoring_accuracy: float
    parameters: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = None
    ground_truth: dict | None = None
    report_dir: str = ""

    @classmethod
    def load(cls, working_dir: str | Path, target_class: str) -> "ACEResult":
        """The result of ``target_class`` in ``working_dir`` (as written by ``ace run`` or the API)."""
        target = WorkDir(str(Path(working_dir).resolve())).target(target_class)
        if not target.summary_json.is_file():
            raise FileNotFoundError(f"no report of class {target_class!r} in {working_dir} ({target.summary_json} is "
                                    "missing): run ACE for it first")
        return cls.from_report(json.loads(target.summary_json.read_text()), target.path)

    @classmethod
    def from_report(cls, data: dict, report_dir: Path) -> "ACEResult":
        run = data["run"]
        examples = data.get("concept_examples", {})
        concepts = []
        for c in data["concepts"]:
            folder = report_dir / "concepts" / concept_folder(c["layer"], c["concept"])
            concepts.append(ConceptResult(
                c["layer"], c["concept"], c["tcav_mean"], c["tcav_std"], c["p_value"], c["p_adjusted"],
                c["cav_accuracy"], c["significant"], c["direction"], c["effect"], tuple(c["effect_ci"]),
                tuple(c["scores"]), tuple(examples.get(f"{c['layer']}:{c['concept']}", ())),
                str(folder) if folder.is_dir() else None))
        concepts.sort(key=lambda c: (not c.significant, c.direction != "raises", -c.tcav_mean))
        return cls(run["target_class"], run["class_index"], run["model"], tuple(run["layers"]), tuple(concepts),
                   {k: tuple(v) for k, v in data["random_discovery"].items()}, run["n_discovery"], run["n_scoring"],
                   run["scoring_accuracy"], data.get("parameters") or {},
                   Evaluation.from_dict(data["evaluation"]) if data.get("evaluation") else None,
                   data.get("ground_truth"), str(report_dir))

    def save(self, path: str | Path) -> Path:
        """Write this result as JSON (read it back with :meth:`from_json`)."""
        path = Path(path)
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "ACEResult":
        d = json.loads(Path(path).read_text())
        d["concepts"] = tuple(ConceptResult(**{**c, "effect_ci": tuple(c["effect_ci"]), "scores": tuple(c["scores"]),
                                               "examples": tuple(c["examples"])}) for c in d["concepts"])
        d["layers"] = tuple(d["layers"])
        d["random_baseline"] = {k: tuple(v) for k, v in d["random_baseline"].items()}
        d["evaluation"] = Evaluation.from_dict(d["evaluation"]) if d.get("evaluation") else None
        return cls(**d)

    @property
    def significant(self) -> tuple[ConceptResult, ...]:
        return tuple(c for c in self.concepts if c.significant)

    @property
    def raising(self) -> tuple[ConceptResult, ...]:
        """Significant concepts that raise the class (TCAV above random), highest TCAV first."""
        return tuple(c for c in self.significant if c.direction == "raises")

    @property
    def lowering(self) -> tuple[ConceptResult, ...]:
        return tuple(c for c in self.significant if c.direction != "raises")

    @property
    def report_page(self) -> Path:
        return Path(self.report_dir) / "index.html"

    def concept(self, name: str, layer: str | None = None) -> ConceptResult:
        """The concept named ``name`` (``zebra_concept3``) of ``layer`` (default: any layer)."""
        for c in self.concepts:
            if c.name == name and (layer is None or c.layer == layer):
                return c
        raise KeyError(f"no concept {name!r}" + (f" in layer {layer!r}" if layer else "") + f" of {self.target_class!r}")

    def table(self) -> list[dict[str, Any]]:
        """One row per concept (for ``pandas.DataFrame(result.table())``)."""
        return [{"layer": c.layer, "concept": c.name, "significant": c.significant, "direction": c.direction,
                 "tcav_mean": c.tcav_mean, "tcav_std": c.tcav_std, "effect": c.effect, "p_value": c.p_value,
                 "cav_accuracy": c.cav_accuracy} for c in self.concepts]

    def show_concept(self, name: str, n: int = 10, layer: str | None = None, kind: str = "superpixels"):
        """A matplotlib figure of a significant concept's first ``n`` examples (and, below, where the
        first ones sit in their images)."""
        import matplotlib.pyplot as plt

        c = self.concept(name, layer)
        rows = [self._images(c, kind, n)]
        where = self._images(c, "where", n)
        if kind == "superpixels" and len(where):
            rows.append(where)
        if not len(rows[0]):
            raise ValueError(f"{c.name} has no example images in the report (only significant concepts have them)")
        cols = max(len(r) for r in rows)
        fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols, 1.4 * len(rows)), squeeze=False)
        for r, imgs in enumerate(rows):
            for k in range(cols):
                ax = axes[r][k]
                ax.axis("off")
                if k < len(imgs):
                    ax.imshow(imgs[k])
        fig.suptitle(f"{c.layer}:{c.name}  TCAV {c.tcav_mean:.2f}±{c.tcav_std:.2f}  {c.direction}  p={c.p_value:.1e}",
                     fontsize=10)
        fig.tight_layout()
        return fig

    @staticmethod
    def _images(c: ConceptResult, kind: str, n: int) -> np.ndarray:
        return c.example_images(kind, n)

    def _repr_html_(self) -> str:
        """A notebook cell shows the concepts, their numbers and a few examples each."""
        esc = html.escape
        rows = []
        for c in self.concepts:
            thumbs = "".join(f'<img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}" '
                             f'width="56" height="56" style="margin:1px">' for p in c.example_paths()[:5])
            colour = {"raises": "#1a7f37", "lowers": "#cf222e"}.get(c.direction, "#8c959f") if c.significant else "#8c959f"
            rows.append(f"<tr><td>{esc(c.layer)}</td><td>{esc(c.name)}</td>"
                        f'<td style="color:{colour}">{esc(c.direction) if c.significant else "not significant"}</td>'
                        f"<td>{c.tcav_mean:.2f} ± {c.tcav_std:.2f}</td><td>{c.effect:+.2f}</td><td>{c.p_value:.1e}</td>"
                        f"<td>{c.cav_accuracy:.2f}</td><td>{thumbs}</td></tr>")
        base = "; ".join(f"{esc(layer)}: {m:.2f} ± {sd:.2f}" for layer, (m, sd, _) in self.random_baseline.items())
        return (f"<div><b>ACE: {esc(self.target_class)}</b> (class {self.class_index}, model {esc(self.model)}, "
                f"layers {esc(', '.join(self.layers))}): {len(self.raising)} concepts raise the class, "
                f"{len(self.lowering)} lower it, of {len(self.concepts)}; random baseline TCAV {base}. "
                f'<a href="{esc(self.report_page.as_uri()) if self.report_dir else "#"}">HTML report</a>'
                "<table><tr><th>layer</th><th>concept</th><th>direction</th><th>mean TCAV</th><th>effect</th>"
                f"<th>p-value</th><th>CAV acc.</th><th>examples</th></tr>{''.join(rows)}</table></div>")

    def __repr__(self) -> str:
        return (f"ACEResult({self.target_class!r}: {len(self.raising)} concepts raise the class, {len(self.lowering)} "
                f"lower it, {len(self.concepts)} in all; report {self.report_page})")


def recorded_parameters(working_dir: str | Path, target_class: str) -> dict[str, Any]:
    """The parameters of a class's finished run, as its ``ace_results.json`` recorded them (raises
    :class:`ace.tasks.errors.ACEInputError` naming what to do when there is none)."""
    from ace.tasks.errors import ACEInputError

    report = WorkDir(str(Path(working_dir).resolve())).target(target_class).summary_json
    if not report.is_file():
        raise ACEInputError(f"no report of class {target_class!r} in --working_dir {working_dir} ({report} is "
                            "missing): run `ace run` for it first")
    params = json.loads(report.read_text()).get("parameters")
    if not params:
        raise ACEInputError(f"{report} was written by an older version that did not record its parameters: run "
                            "its `ace run` command again")
    return params


@dataclass(frozen=True)
class ImageExplanation:
    """One image explained with a class's concepts (``ace explain-images``; files in ``folder``):
    ``concepts`` as in its ``map.json`` (label, concept, direction, area_share, occlusion,
    occlusion_logit, kept, gradient, colour)."""

    image: str
    layer: str
    target_class: str
    probability: float
    logit: float
    concepts: tuple[dict, ...]
    folder: str

    @classmethod
    def load(cls, map_json: str | Path) -> "ImageExplanation":
        d = json.loads(Path(map_json).read_text())
        return cls(d["image"], d["layer"], d["target_class"], d["probability"], d["logit"], tuple(d["concepts"]),
                   str(Path(map_json).parent))

    def concept_map(self) -> np.ndarray:
        """(H, W) uint8 labels at the image's size: 0 no concept, k the k-th of ``concepts``."""
        from PIL import Image

        return np.asarray(Image.open(Path(self.folder) / "map.png"))

    def overlay(self) -> np.ndarray:
        from PIL import Image

        return np.asarray(Image.open(Path(self.folder) / "overlay.png").convert("RGB"))

    def _repr_html_(self) -> str:
        png = base64.b64encode((Path(self.folder) / "overlay.png").read_bytes()).decode()
        rows = "".join(f"<tr><td style=\"color:{c['colour']}\">&#9632;</td><td>{html.escape(c['concept'])}</td>"
                       f"<td>{c['area_share']:.0%}</td><td>{c['occlusion']:+.3f}</td><td>{c['gradient']:+.4f}</td></tr>"
                       for c in self.concepts)
        return (f"<div><b>{html.escape(Path(self.image).name)}</b> ({html.escape(self.layer)}; class probability "
                f"{self.probability:.3f})<br><img src=\"data:image/png;base64,{png}\" style=\"max-width:480px\">"
                "<table><tr><th></th><th>concept</th><th>area</th><th>occlusion</th><th>gradient</th></tr>"
                f"{rows}</table></div>")
