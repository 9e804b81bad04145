"""The HTML report: one page per class and an index of the classes of a working directory.

Pure functions from scores to text; :mod:`ace.tasks.report` writes the pages:

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
from dataclasses import dataclass, field
from urllib.parse import quote

from ace.tasks.stats import ConceptScore

COLOURS = {"raises": "#1a7f37", "lowers": "#cf222e", "neither": "#8c959f"}

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;
padding:0 18px 40px;color:#1f2328}
h1{font-size:22px;margin:18px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
h3{font-size:15px;margin:18px 0 4px}table{border-collapse:collapse}td,th{padding:3px 10px 3px 0;text-align:left;
vertical-align:top}th{font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px}
.raises{background:#1a7f37}.lowers{background:#cf222e}.neither{background:#8c959f}
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


@dataclass(frozen=True)
class PageRun:
    """The header of a class page."""

    target_class: str
    class_index: int
    model: str
    layers: tuple[str, ...]
    n_discovery: int
    n_scoring: int
    scoring_accuracy: float
    num_random_exp: int
    test: str
    alpha: float
    correction: str
    settings: tuple[tuple[str, str], ...] = field(default_factory=tuple)


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


def _run_table(run: PageRun) -> str:
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


def class_page(run: PageRun, scores: list[ConceptScore], baselines: dict[str, tuple[float, float, float]],
               views: list[ConceptView], galleries: dict[str, str]) -> str:
    """The HTML of ``classes/<class>/index.html``; ``views`` are the significant concepts with
    their image paths relative to the page, ``galleries`` layer -> relative path of its PNG."""
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
