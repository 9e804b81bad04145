"""Compare the concepts of two runs of one class (other precision, embedding, CAV solver or seed).

    python benchmarks/compare_runs.py WORKING_DIR_A WORKING_DIR_B --target_class zebra

Concepts are matched by their members: the superpixels (rows of the shared segments table) each
concept keeps as examples; two concepts match when the Jaccard overlap of their examples is the
largest for both and at least ``--min_jaccard``. Prints every concept of A with its match in B
(TCAV, significance, direction) and how many of A's significant concepts B also finds significant
with the same direction; ``--json`` writes the same as a dict.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(wd: str, target: str) -> dict:
    path = Path(wd) / "classes" / target.replace(" ", "_") / "results_summaries" / "ace_results.json"
    return json.loads(path.read_text())


def match(a: dict, b: dict, min_jaccard: float = 0.3) -> list[tuple[dict, dict | None, float]]:
    ex_a, ex_b = a["concept_examples"], b["concept_examples"]
    by_b = {f"{c['layer']}:{c['concept']}": c for c in b["concepts"]}
    out = []
    for c in a["concepts"]:
        key = f"{c['layer']}:{c['concept']}"
        sa = set(ex_a[key])
        best, best_j = None, 0.0
        for kb, rows in ex_b.items():
            j = len(sa & set(rows)) / max(1, len(sa | set(rows)))
            if j > best_j and kb.split(":")[0] == c["layer"]:
                best, best_j = kb, j
        out.append((c, by_b.get(best) if best_j >= min_jaccard else None, best_j))
    return out


def agreement(pairs) -> dict:
    sig = [(a, b) for a, b, _ in pairs if a["significant"]]
    same = [1 for a, b in sig if b is not None and b["significant"] and b["direction"] == a["direction"]]
    top_a = max((a for a, _, _ in pairs if a["significant"] and a["direction"] == "raises"),
                key=lambda c: c["tcav_mean"], default=None)
    top_pair = next(((a, b, j) for a, b, j in pairs if a is top_a), None)
    return {"significant_in_a": len(sig), "also_significant_same_direction_in_b": len(same),
            "top_raising_in_a": top_a["concept"] if top_a else None,
            "its_match_in_b": top_pair[1]["concept"] if top_pair and top_pair[1] else None,
            "match_jaccard": round(top_pair[2], 3) if top_pair else None,
            "match_is_significant_and_raises": bool(top_pair and top_pair[1] and top_pair[1]["significant"]
                                                     and top_pair[1]["direction"] == "raises")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--target_class", default="zebra")
    p.add_argument("--min_jaccard", type=float, default=0.3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    pairs = match(load(args.a, args.target_class), load(args.b, args.target_class), args.min_jaccard)
    for a, b, j in sorted(pairs, key=lambda t: -t[0]["tcav_mean"]):
        right = (f"{b['concept']:<18} TCAV {b['tcav_mean']:.2f} {'sig' if b['significant'] else '   '} {b['direction']:<7}"
                 if b else "(no match)")
        print(f"{a['concept']:<18} TCAV {a['tcav_mean']:.2f} {'sig' if a['significant'] else '   '} {a['direction']:<7}"
              f" -> Jaccard {j:.2f}  {right}")
    summary = agreement(pairs)
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
