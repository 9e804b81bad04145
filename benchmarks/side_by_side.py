"""The seed's command side by side with the original PyTorch port (MKowal2/ACE_TCAV_Pytorch).

    python benchmarks/side_by_side.py --original /path/to/ACE_TCAV_Pytorch \\
        --source_dir ../shared/data/imagenet_zebra --max_imgs 20 --min_imgs 10

Both get the same photos, flags and seeded random ResNet-18 weights (no ImageNet weights can be
downloaded here), ``layer3``. The original needs CUDA and torch.hub; it is run unmodified on the CPU
with three patches applied at start-up (``.cuda()`` is the identity, ``torch.hub.load`` returns the
seeded model, ``np.float`` is ``float``). Each command runs in a fresh process under
``/usr/bin/time -v``; prints wall time and peak RSS of both and the ratios.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PATCHES = """
import sys, runpy, numpy as np, torch, torchvision
torch.manual_seed(0)
np.float = float; np.int = int
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
_state = torch.load(sys.argv[1], weights_only=True)
def _load(repo, name, pretrained=True, **k):
    m = getattr(torchvision.models, name)()
    m.load_state_dict(_state)
    return m
torch.hub.load = _load
sys.argv = [sys.argv[2]] + sys.argv[3:]
sys.path.insert(0, str(__import__('pathlib').Path(sys.argv[0]).parent))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def timed(cmd: list[str], cwd: str | None = None) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS in GB, exit code, output tail) of a command in a fresh process."""
    t0 = time.time()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], cwd=cwd, capture_output=True, text=True)
    wall = time.time() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return wall, (int(m.group(1)) / 1024**2 if m else float("nan")), p.returncode, (p.stdout + p.stderr)[-2000:]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", required=True, help="a checkout of MKowal2/ACE_TCAV_Pytorch")
    p.add_argument("--source_dir", required=True)
    p.add_argument("--target_class", default="zebra")
    p.add_argument("--max_imgs", type=int, default=20)
    p.add_argument("--min_imgs", type=int, default=10)
    p.add_argument("--num_random_exp", type=int, default=20)
    p.add_argument("--layer", default="layer3")
    p.add_argument("--skip_original", action="store_true")
    args = p.parse_args()

    import torch
    import torchvision

    tmp = Path(tempfile.mkdtemp(prefix="ace-side-by-side-"))
    weights = tmp / "resnet18_seed0.pt"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    (tmp / "patched.py").write_text(PATCHES)
    flags = ["--target_class", args.target_class, "--source_dir", str(Path(args.source_dir).resolve()),
             "--model_to_run", "resnet18", "--labels_path", str(Path(args.original).resolve() / "imagenet_class_index.json"),
             "--feature_names", args.layer, "--num_random_exp", str(args.num_random_exp), "--max_imgs",
             str(args.max_imgs), "--min_imgs", str(args.min_imgs), "--num_parallel_workers", "0"]
    rows = []
    if not args.skip_original:
        orig = timed([sys.executable, str(tmp / "patched.py"), str(weights), str(Path(args.original).resolve() /
                      "ace_run.py"), *flags, "--working_dir", str(tmp / "orig_wd"), "--stat_testing_filter"],
                     cwd=args.original)
        rows.append(("original port", orig))
        print(f"original: {orig[0]:.0f} s, {orig[1]:.2f} GB, exit {orig[2]}", flush=True)
        if orig[2]:
            print(orig[3])
    ours = timed([sys.executable, str(ROOT / "ace_run.py"), *flags, "--model_path", str(weights),
                  "--working_dir", str(tmp / "ours_wd")], cwd=str(ROOT))
    rows.append(("ace-flow (cold)", ours))
    print(f"ace-flow: {ours[0]:.0f} s, {ours[1]:.2f} GB, exit {ours[2]}", flush=True)
    if ours[2]:
        print(ours[3])
    print("\n| run | wall | peak RSS |\n| --- | --- | --- |")
    for name, (wall, rss, _, _) in rows:
        print(f"| {name} | {wall:.0f} s | {rss:.2f} GB |")
    if len(rows) == 2:
        (ow, orss, _, _), (w, rss, _, _) = rows[0][1], rows[1][1]
        print(f"\nace-flow is {ow / w:.1f}x faster and uses {orss / rss:.1f}x less memory")
    print(f"(working dirs under {tmp}; remove them when done)", file=sys.stderr)


if __name__ == "__main__":
    main()
