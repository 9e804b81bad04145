"""The HTML report: one page per class and an index of the classes of a working directory.

Pure functions from scores to text; :mod:`ace.tasks.report.writer` writes the pages:

* ``classes/<class>/index.html``: the run (model, layers, images, settings), a chart of every
  concept's mean TCAV +- std against the random_discovery baseline with significance and direction
  marked, then per significant concept its numbers (TCAV, effect with 95% CI, p-value, CAV
  accuracy), its examples and where they sit in their images;
* ``index.html`` at the top of the working directory: a line and a link per class.

The pages are self-contained (inline CSS and SVG, no script, no network) and refer to images by
relative links, so they open from ``file://`` and from a copied working directory.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from urllib.parse import quote

from ace.tasks.algorithm.stats import ConceptScore
from ace.tasks.report.info import RunInfo

COLOURS = {"raises": "#1a7f37", "lowers": "#cf222e", "neither": "#8c959f"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:0 18px 40px;color:#1f2328}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 4px}table{border-collapse:collapse}td,th{padding:3px 10px 3px 0;text-align:left;
vertical-align:top}th{font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px}
.raises{background:#1a7f37}.lowers{background:#cf222e}.neither{background:#8c959f}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:middle}
.strip{display:flex;flex-wrap:wrap;gap:4px}.strip img{width:112px;height:112px;image-rendering:auto;
border:1px solid #d0d7de}.note{color:#59636e}.concept{margin-bottom:22px}nav{margin-top:10px}
"""


@dataclass(frozen=True)
class ConceptView:
    """A significant concept as the page shows it: its score and the relative paths of its images."""

    score: ConceptScore
    size: int
    n_images: int
    examples: tuple[str, ...] = ()
    where: tuple[str, ...] = ()


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def href(path: str) -> str:
    """A relative link (``/``-separated) with each part percent-encoded."""
    return "/".join(quote(p) for p in path.split("/"))


def _page(title: str, body: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def kind(s: ConceptScore) -> str:
    """``raises`` / ``lowers`` for significant concepts, ``neither`` for the others."""
    return s.direction if s.significant and s.direction in ("raises", "lowers") else "neither"


def tcav_chart(layer: str, scores: list[ConceptScore], baseline: tuple[float, float, float]) -> str:
    """An SVG bar chart: mean TCAV +- std per concept (highest first), the baseline as a dashed line."""
    rows = sorted((s for s in scores if s.layer == layer), key=lambda s: -s.tcav_mean)
    label_w, plot_w, row_h, top = 190, 520, 20, 26
    height = top + row_h * (len(rows) + 1) + 34
    x = lambda v: label_w + max(0.0, min(1.0, v)) * plot_w  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + plot_w + 150}" height="{height}" '
           f'role="img" aria-label="mean TCAV per concept, layer {esc(layer)}" font-size="12">']
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{x(t):.1f}" y1="{top - 6}" x2="{x(t):.1f}" y2="{height - 30}" stroke="#eaeef2"/>'
                   f'<text x="{x(t):.1f}" y="{height - 16}" text-anchor="middle" fill="#59636e">{t:g}</text>')
    out.append(f'<text x="{label_w + plot_w / 2}" y="{height - 2}" text-anchor="middle" fill="#59636e">'
               f"mean TCAV score over the random sets (bar) &#177; std (whisker)</text>")
    all_rows = [(s.concept, s.tcav_mean, s.tcav_std, COLOURS[kind(s)],
                 ("&#9650; raises" if kind(s) == "raises" else "&#9660; lowers" if kind(s) == "lowers"
                  else f"n.s. p={s.p_value:.2g}")) for s in rows]
    all_rows.append(("random_discovery", baseline[0], baseline[1], "#6e7781", "baseline"))
    for i, (name, mean, std, colour, note) in enumerate(all_rows):
        y = top + i * row_h
        out.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end">{esc(name)}</text>'
                   f'<rect x="{label_w}" y="{y + 3}" width="{x(mean) - label_w:.1f}" height="{row_h - 6}" '
                   f'fill="{colour}" fill-opacity="0.85"><title>{esc(name)}: {mean:.3f} &#177; {std:.3f}</title></rect>'
                   f'<line x1="{x(mean - std):.1f}" y1="{y + row_h / 2}" x2="{x(mean + std):.1f}" y2="{y + row_h / 2}" '
                   f'stroke="#1f2328" stroke-width="1.5"/>'
                   f'<text x="{label_w + plot_w + 8}" y="{y + 13}" fill="{colour}">{mean:.2f} {note}</text>')
    bx = x(baseline[0])
    out.append(f'<line x1="{bx:.1f}" y1="{top - 10}" x2="{bx:.1f}" y2="{height - 30}" stroke="#1f2328" '
               f'stroke-dasharray="5 4"/><text x="{bx:.1f}" y="{top - 12}" text-anchor="middle">random '
               f"{baseline[0]:.2f}</text></svg>")
    return "".join(out)


def _run_table(run: RunInfo) -> str:
    rows = [("model", run.model), ("class", f"{run.target_class} (index {run.class_index})"),
            ("layers", ", ".join(run.layers)),
            ("images", f"{run.n_discovery} discovery, {run.n_scoring} scoring; the model predicts the class on "
                       f"{run.scoring_accuracy:.0%} of the scoring images"),
            ("random sets", str(run.num_random_exp)),
            ("significance", f"{run.test} paired t-test against random_discovery, p &le; {run.alpha:g} "
                             f"(correction: {run.correction})"),
            *run.settings]
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{v if k == 'significance' else esc(v)}</td></tr>"
                               for k, v in rows) + "</table>"


def _strip(paths: tuple[str, ...], alt: str) -> str:
    return '<div class="strip">' + "".join(f'<img src="{href(p)}" alt="{esc(alt)}" loading="lazy">'
                                           for p in paths) + "</div>"


def _concept_section(v: ConceptView) -> str:
    s = v.score
    k = kind(s)
    lo, hi = s.effect_ci
    return (f'<section class="concept" id="{esc(s.layer)}-{esc(s.concept)}"><h3>{esc(s.concept)} '
            f'<span class="badge {k}">{k}</span> <span class="note">layer {esc(s.layer)}</span></h3>'
            f'<table><tr><th>mean TCAV</th><td class="num">{s.tcav_mean:.3f} &#177; {s.tcav_std:.3f}</td>'
            f'<th>effect vs random</th><td class="num">{s.effect:+.3f} [{lo:+.3f}, {hi:+.3f}]</td>'
            f'<th>p-value</th><td class="num">{s.p_value:.2g}</td><th>CAV accuracy</th>'
            f'<td class="num">{s.cav_accuracy:.3f}</td><th>superpixels</th><td class="num">{v.size} in '
            f"{v.n_images} images</td></tr></table>"
            f"<p class=\"note\">Examples (nearest to the cluster centre first):</p>{_strip(v.examples, s.concept)}"
            f"<p class=\"note\">Where they sit (the rest of the image dimmed, the superpixel outlined):</p>"
            f"{_strip(v.where, s.concept + ' in its image')}</section>")


def class_page(run: RunInfo, scores: list[ConceptScore], baselines: dict[str, tuple[float, float, float]],
               views: list[ConceptView], galleries: dict[str, str], blocks: dict | None = None) -> str:
    """The HTML of ``classes/<class>/index.html``; ``views`` are the significant concepts with
    their image paths relative to the page, ``galleries`` layer -> relative path of its PNG,
    ``blocks`` the optional ``ground_truth`` and ``evaluation`` of ``ace_results.json``."""
    blocks = blocks or {}
    raises = [v for v in views if kind(v.score) == "raises"]
    lowers = [v for v in views if kind(v.score) == "lowers"]
    raises.sort(key=lambda v: -v.score.tcav_mean)
    lowers.sort(key=lambda v: v.score.tcav_mean)
    dropped = [s for s in scores if not s.significant]
    body = ['<nav><a href="../../index.html">all classes</a> &middot; '
            '<a href="results_summaries/ace_results.txt">ace_results.txt</a> &middot; '
            '<a href="results_summaries/ace_results.json">ace_results.json</a></nav>',
            f"<h1>Why {esc(run.model)} predicts &ldquo;{esc(run.target_class)}&rdquo;: ACE concepts</h1>",
            f'<p class="note">{len(raises)} concepts raise the class, {len(lowers)} lower it (TCAV significantly '
            f"below random: evidence <em>against</em> the class), {len(dropped)} are not significant.</p>",
            "<h2>Run</h2>", _run_table(run), "<h2>TCAV scores</h2>",
            '<p class="note">Bars: mean TCAV score of each concept over the random sets (the share of scoring images '
            "whose class-logit gradient points along the concept's CAV); whiskers: std; dashed line: the "
            "random_discovery baseline. Green: significantly above it; red: significantly below; grey: not "
            "significant.</p>"]
    for layer in run.layers:
        body.append(f"<h3>layer {esc(layer)}</h3>{tcav_chart(layer, scores, baselines[layer])}")
        if layer in galleries:
            body.append(f'<p class="note"><a href="{href(galleries[layer])}">gallery of layer {esc(layer)}</a></p>')
    if blocks.get("ground_truth"):
        body.append(ground_truth_section(blocks["ground_truth"]))
    if blocks.get("evaluation"):
        body.append(evaluation_section(blocks["evaluation"]))
        if blocks["evaluation"].get("fidelity"):
            body.append(fidelity_section(blocks["evaluation"]["fidelity"]))
    if blocks.get("where"):
        body.append(where_section(blocks["where"]))
    body.append("<h2>Concepts that raise the class, highest TCAV first</h2>")
    body += [_concept_section(v) for v in raises] or ['<p class="note">none</p>']
    body.append("<h2>Concepts that lower the class, lowest TCAV first</h2>")
    body += [_concept_section(v) for v in lowers] or ['<p class="note">none</p>']
    body.append("<h2>Not significant</h2>")
    body.append("<table><tr><th>layer</th><th>concept</th><th>mean TCAV</th><th>std</th><th>p-value</th>"
                "<th>CAV accuracy</th></tr>" + "".join(
                    f"<tr><td>{esc(s.layer)}</td><td>{esc(s.concept)}</td><td class=\"num\">{s.tcav_mean:.3f}</td>"
                    f"<td class=\"num\">{s.tcav_std:.3f}</td><td class=\"num\">{s.p_value:.2g}</td>"
                    f"<td class=\"num\">{s.cav_accuracy:.3f}</td></tr>" for s in dropped) + "</table>")
    return _page(f"ACE: {run.target_class}", "\n".join(body))


def where_section(where: dict) -> str:
    """The scoring images painted with the significant concepts (see :mod:`ace.tasks.report.where`)."""
    n = where["n_images"]
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{esc(c["colour"])}"></span> {esc(c["concept"])}</td>'
        f'<td><span class="badge {esc(c["direction"])}">{esc(c["direction"])}</span></td>'
        f'<td class="num">{c["images"]} of {n}</td><td class="num">{c["pixel_share"]:.1%}</td></tr>'
        for c in sorted(where["concepts"], key=lambda c: -c["pixel_share"]))
    return (f"<h2>Where each concept fires</h2><p class=\"note\">The {n} scoring images of layer "
            f"{esc(where['layer'])}, segmented as the discovery images were; each superpixel belongs to the nearest of "
            "the layer's concepts if it lies within that concept's radius, and each pixel shows the concept of the "
            "finest superpixel covering it (only significant concepts are painted). The same rule and colours as "
            "<code>ace explain-images</code>.</p>"
            "<table><tr><th>concept</th><th>direction</th><th>scoring images it fires in</th>"
            f"<th>share of their pixels</th></tr>{rows}</table>{_strip(tuple(where['images']), 'concept map')}")


def ground_truth_section(gt: dict) -> str:
    """The ground-truth table (see :mod:`ace.tasks.algorithm.groundtruth`)."""
    rows = "".join(f"<tr><td>{esc(part)}</td><td>{esc(r['concept'] or '-')}</td><td class=\"num\">{r['purity']:.2f}</td>"
                   f"<td class=\"num\">{r['recall']:.2f}</td><td class=\"num\">{r['superpixels_on_part']}</td></tr>"
                   for part, r in gt["parts"].items())
    bg = ", ".join(gt["background_concepts"]) or "none"
    return (f"<h2>Ground truth</h2><p class=\"note\">The source has part masks: for each part that makes the class, "
            f"the significant raising concept (layer {esc(gt['layer'])}) whose examples lie most purely on it. Purity: "
            f"share of its examples mostly on the part; recall: share of the part's superpixels in its cluster.</p>"
            f"<table><tr><th>part</th><th>best concept</th><th>purity</th><th>recall</th><th>superpixels on it</th></tr>"
            f"{rows}</table><p>Significant concepts mostly on the background: {gt['background_significant']} "
            f"({esc(bg)})</p>")


def _curve_chart(title: str, series: list[tuple[str, str, bool, list[dict]]], metric: str,
                 xlabel: str = "k (top concepts)") -> str:
    """A small SVG line chart of ``metric`` (0..1) against k; series: (label, colour, dashed, points)."""
    w, h, left, top, bottom = 300, 190, 40, 22, 34
    ks = sorted({p["k"] for _, _, _, pts in series for p in pts}) or [1]
    kmin, kmax = min(ks), max(max(ks), min(ks) + 1)
    x = lambda k: left + (k - kmin) / (kmax - kmin) * (w - left - 12)  # noqa: E731
    y = lambda v: top + (1 - v) * (h - top - bottom)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 18 * len(series)}" font-size="11" '
           f'role="img" aria-label="{esc(title)}"><text x="{left}" y="13" font-weight="600">{esc(title)}</text>']
    for v in (0, 0.5, 1):
        out.append(f'<line x1="{left}" x2="{w - 12}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eaeef2"/>'
                   f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#59636e">{v:g}</text>')
    for k in ks:
        out.append(f'<text x="{x(k):.1f}" y="{h - bottom + 14}" text-anchor="middle" fill="#59636e">{k}</text>')
    out.append(f'<text x="{(left + w) / 2:.0f}" y="{h - 4}" text-anchor="middle" fill="#59636e">{esc(xlabel)}</text>')
    for i, (label, colour, dashed, pts) in enumerate(series):
        line = " ".join(f"{x(p['k']):.1f},{y(p[metric]):.1f}" for p in pts)
        dash = ' stroke-dasharray="5 4"' if dashed else ""
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        out += [f'<circle cx="{x(p["k"]):.1f}" cy="{y(p[metric]):.1f}" r="3" fill="{colour}">'
                f'<title>{esc(label)} k={p["k"]}: {p[metric]:.2f}</title></circle>' for p in pts]
        ly = h + 6 + 18 * i
        out.append(f'<line x1="{left}" x2="{left + 24}" y1="{ly}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>'
                   f'<text x="{left + 30}" y="{ly + 4}">{esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def evaluation_section(ev: dict) -> str:
    """SSC/SDC curves (see :mod:`ace.tasks.algorithm.evaluate`)."""
    if not ev.get("ssc"):
        return "<h2>SSC / SDC</h2><p class=\"note\">No significant concept raises the class: nothing to evaluate.</p>"
    series = [("only the top-k concepts kept (SSC)", "#1a7f37", False, ev["ssc"]),
              ("as many random superpixels kept", "#1a7f37", True, ev["ssc_random"]),
              ("the top-k concepts removed (SDC)", "#cf222e", False, ev["sdc"]),
              ("as many random superpixels removed", "#cf222e", True, ev["sdc_random"])]
    names = ", ".join(f"{i + 1}. {esc(n)}" for i, n in enumerate(ev["concepts"]))
    return (f"<h2>SSC / SDC: are the concepts sufficient, necessary?</h2><p class=\"note\">On the "
            f"{ev['n_images']} scoring images (the model predicts the class on {ev['original']['accuracy']:.0%} of them "
            f"as they are), each superpixel assigned to its nearest concept (layer {esc(ev['layer'])}); the top concepts "
            f"by mean TCAV: {names}. Kept: everything else filled with the neutral colour; removed: those superpixels "
            f"filled.</p><div class=\"strip\">"
            f"{_curve_chart('share of images predicted as the class', series, 'accuracy')}"
            f"{_curve_chart('mean class probability', series, 'probability')}</div>")


def fidelity_section(fid: dict) -> str:
    """Completeness and the C-Deletion / C-Insertion curves (see :mod:`ace.tasks.algorithm.fidelity`)."""
    colours = {"tcav": "#0969da", "image": "#1a7f37", "random": "#8c959f"}

    def series(kind: str, score: str) -> list:
        return [(f"{order} order ({score} {curve[score]:.3f})", colours.get(order, "#000"), order == "random",
                 [{"k": k, "probability": v} for k, v in enumerate(curve["curve"])])
                for order, curve in fid[kind].items()]

    without = ", ".join(f"{esc(n)}: {v:.2f}" for n, v in zip(fid["concepts"], fid["completeness_without"]))
    return (f"<h2>How much the concepts explain</h2><p class=\"note\">Completeness {fid['completeness']:.2f}: on the "
            f"{fid['n_images']} scoring images, the class probability with only the {len(fid['concepts'])} "
            f"significant concepts' regions kept ({fid['concepts_only']:.2f}) against the whole image "
            f"({fid['probability']:.2f}) and a blank one ({fid['blank']:.2f}). Without one concept: {without}. "
            "Deletion: concepts removed one at a time (AOPC: the mean probability lost; higher is a more faithful "
            "order); insertion: put back one at a time on a blank image (AUC: the mean probability).</p>"
            f"<div class=\"strip\">{_curve_chart('C-Deletion: class probability', series('deletion', 'aopc'), 'probability', 'concepts removed')}"
            f"{_curve_chart('C-Insertion: class probability', series('insertion', 'auc'), 'probability', 'concepts put back')}</div>")


def index_page(rows: list[dict]) -> str:
    """The working directory's ``index.html``: ``rows`` have target_class, status, concepts_kept,
    top_concept and page (the class page relative to the index, or "" when there is none)."""
    body = ["<h1>ACE reports in this working directory</h1>",
            "<table><tr><th>class</th><th>status</th><th>concepts kept</th><th>top concept</th></tr>"]
    for r in rows:
        name = (f'<a href="{href(r["page"])}">{esc(r["target_class"])}</a>' if r.get("page")
                else esc(r["target_class"]))
        body.append(f"<tr><td>{name}</td><td>{esc(r['status'])}</td><td>{esc(r['concepts_kept'])}</td>"
                    f"<td>{esc(r['top_concept'])}</td></tr>")
    body.append("</table>")
    return _page("ACE reports", "\n".join(body))
