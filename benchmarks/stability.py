"""How much the significant concepts change across seeds and CAV solvers.

    python benchmarks/stability.py --source_dir ../shared/data/imagenet_zebra --working_dir /tmp/stab \\
        --target_class zebra --model_to_run efficientnet_lite0 --feature_names _blocks.10
    python benchmarks/stability.py --demo --working_dir /tmp/stab_demo
    python benchmarks/stability.py ... --working_dir /tmp/stab_fp32 --precision fp32 --solvers exact \
        --compare_with /tmp/stab          # fp32 against the bf16 runs above, seed by seed

Runs the class for every ``--seeds`` x ``--solvers`` in one working directory (the embeddings are
computed once; the seed changes the clustering and the CAVs) and compares the runs' significant
concepts, matched by members (see compare_runs.py): for two runs, the Jaccard index of their sets of
significant concepts, a concept counting as shared when its match is significant in the other run
with the same direction. Prints a markdown table: mean (min) Jaccard over the pairs of seeds per
solver, between the solvers at the same seed, and how often the top raising concept is shared.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_runs import match  # noqa: E402


def significant_jaccard(a: dict, b: dict) -> tuple[float, bool]:
    """(Jaccard of the significant sets matched by members, whether A's top raising concept is shared)."""
    pairs = match(a, b)
    sig_a = [p for p in pairs if p[0]["significant"]]
    n_b = sum(c["significant"] for c in b["concepts"])
    shared = [p for p in sig_a if p[1] is not None and p[1]["significant"] and p[1]["direction"] == p[0]["direction"]]
    union = len(sig_a) + n_b - len(shared)
    top = max((p for p in sig_a if p[0]["direction"] == "raises"), key=lambda p: p[0]["tcav_mean"], default=None)
    return (len(shared) / union if union else 1.0), bool(top is not None and top in shared)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="the demo world and CNN (ace demo's settings)")
    p.add_argument("--source_dir")
    p.add_argument("--working_dir", required=True)
    p.add_argument("--target_class", default="zebra")
    p.add_argument("--model_to_run", default="efficientnet_lite0")
    p.add_argument("--labels_path", default=None)
    p.add_argument("--feature_names", nargs="+", default=["_blocks.10"])
    p.add_argument("--max_imgs", type=int, default=50)
    p.add_argument("--min_imgs", type=int, default=30)
    p.add_argument("--num_random_exp", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--solvers", nargs="+", default=["sgd", "exact"])
    p.add_argument("--precision", default="auto")
    p.add_argument("--compare_with", default=None,
                   help="another stability working dir (other precision): compare its runs with these, same solver and seed")
    args = p.parse_args()

    from prefect.task_runners import ThreadPoolTaskRunner

    from ace.flows.ace_flow import ace_flow
    from ace.flows.cli import _prefect_env, demo_kwargs

    _prefect_env()
    wd = Path(args.working_dir).resolve()
    if args.demo:
        kwargs = {k: v for k, v in demo_kwargs(str(wd)).items() if k not in ("cav_solver", "evaluate", "seed")}
    else:
        kwargs = dict(target_class=args.target_class, source_dir=str(Path(args.source_dir).resolve()),
                      working_dir=str(wd), model_to_run=args.model_to_run, labels_path=args.labels_path,
                      feature_names=args.feature_names, max_imgs=args.max_imgs, min_imgs=args.min_imgs,
                      num_random_exp=args.num_random_exp)
    out = wd / "stability"
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[tuple[str, int], dict] = {}
    for solver, seed in itertools.product(args.solvers, args.seeds):
        saved = out / f"{solver}-seed{seed}.json"
        if not saved.is_file():
            t0 = time.time()
            summary = ace_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))(
                **kwargs, seed=seed, cav_solver=solver, precision=args.precision)
            shutil.copy(Path(summary).with_suffix(".json"), saved)
            print(f"{solver} seed {seed}: {time.time() - t0:.0f} s", flush=True)
        runs[(solver, seed)] = json.loads(saved.read_text())

    rows = []
    for solver in args.solvers:
        res = [significant_jaccard(runs[(solver, a)], runs[(solver, b)])
               for a, b in itertools.permutations(args.seeds, 2)]
        n_sig = [sum(c["significant"] for c in runs[(solver, s)]["concepts"]) for s in args.seeds]
        rows.append((f"{solver}, seeds {args.seeds[0]}..{args.seeds[-1]}", res, n_sig))
    if len(args.solvers) == 2:
        s1, s2 = args.solvers
        res = [significant_jaccard(runs[(s1, s)], runs[(s2, s)]) for s in args.seeds]
        res += [significant_jaccard(runs[(s2, s)], runs[(s1, s)]) for s in args.seeds]
        rows.append((f"{s1} vs {s2}, same seed", res, []))
    if args.compare_with:
        other = Path(args.compare_with).resolve() / "stability"
        for solver in args.solvers:
            pairs = [(runs[(solver, s)], json.loads((other / f"{solver}-seed{s}.json").read_text()))
                     for s in args.seeds if (other / f"{solver}-seed{s}.json").is_file()]
            res = [significant_jaccard(a, b) for a, b in pairs] + [significant_jaccard(b, a) for a, b in pairs]
            if res:
                rows.append((f"{solver}, precision {args.precision} vs {other.parent.name}, same seed", res, []))
    print("\n| runs compared | Jaccard of significant concepts, mean (min) | top raising concept shared | "
          "significant concepts per run |")
    print("| --- | --- | --- | --- |")
    for name, res, n_sig in rows:
        if not res:
            continue
        js = [j for j, _ in res]
        print(f"| {name} | {sum(js) / len(js):.2f} ({min(js):.2f}) | {sum(t for _, t in res)}/{len(res)} | "
              f"{', '.join(map(str, n_sig)) or '-'} |")


if __name__ == "__main__":
    main()
