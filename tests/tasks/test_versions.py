"""A guard for the steps' code versions (ace.tasks.versions): a change to the code of a step must be
a deliberate decision, either a new version (its outputs in existing working dirs are recomputed)
or a statement that what it writes is unchanged (the recorded code is updated).

The code of a step is the syntax tree of the modules it runs (comments and docstrings left out),
recorded per ``<step>@<version>`` in ``step_code.json``. When this test fails after a change:
bump the step in ``tasks/versions.py`` if outputs change, then (either way) record the code again:

    python -m tests.tasks.test_versions
"""

import ast
import hashlib
import json
from pathlib import Path

from ace.tasks.versions import STEP_VERSIONS

ROOT = Path(__file__).resolve().parents[2]
RECORD = Path(__file__).with_name("step_code.json")
MODELS = ["tasks/models/loader.py", "tasks/models/zoo.py", "tasks/models/weights.py", "tasks/models/labels.py",
          "tasks/models/layouts.py", "tasks/models/precision.py", "tasks/models/demo_cnn.py"]
EMBEDDING = ["tasks/algorithm/embed.py", "tasks/algorithm/forward.py", "tasks/algorithm/pooled_embedding.py",
             "tasks/algorithm/sources.py", "tasks/algorithm/patches.py", "tasks/models/layouts.py",
             "tasks/models/precision.py", "tasks/models/backends.py", "tasks/models/hooks.py"]
STEP_CODE = {
    "resolve-model": MODELS,
    "compile-model": ["tasks/models/backends.py", "tasks/models/loader.py", "tasks/models/hooks.py"],
    "scan-images": ["tasks/algorithm/images.py"],
    "load-images": ["tasks/algorithm/images.py"],
    "superpixels": ["tasks/algorithm/superpixels.py", "tasks/algorithm/slic.py", "tasks/threads.py"],
    "embed": EMBEDDING,
    "gradients": EMBEDDING,
    "cluster": ["tasks/algorithm/cluster.py"],
    "filter-concepts": ["tasks/algorithm/cluster.py"],
    "concept-activations": ["tasks/algorithm/cav.py"],
    "cav-tcav": ["tasks/algorithm/cav.py"],
    "statistical-test": ["tasks/algorithm/stats.py"],
    "evaluate": ["tasks/algorithm/evaluate.py", "tasks/algorithm/fidelity.py", "tasks/algorithm/patches.py",
                 "tasks/algorithm/forward.py", "tasks/models/hooks.py"],
    "concept-table": ["tasks/algorithm/concept_maps.py"],
    "explain-image": [*EMBEDDING, "tasks/algorithm/concept_maps.py", "tasks/report/image_page.py",
                      "tasks/algorithm/superpixels.py", "tasks/algorithm/slic.py", "tasks/algorithm/evaluate.py"],
    "images-page": ["tasks/report/image_page.py"],
    "report": [*sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tasks" / "report").glob("*.py")),
               "tasks/algorithm/groundtruth.py", "tasks/algorithm/patches.py"],
}


def _code(path: str) -> str:
    """The module's syntax tree without docstrings (comments are not in it)."""
    tree = ast.parse((ROOT / path).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def step_digests() -> dict[str, str]:
    return {f"{step}@{STEP_VERSIONS[step]}": hashlib.sha256("".join(_code(p) for p in files).encode()).hexdigest()[:16]
            for step, files in STEP_CODE.items()}


def test_every_step_is_guarded():
    assert set(STEP_CODE) == set(STEP_VERSIONS)


def test_a_changed_step_has_a_deliberate_version():
    recorded = json.loads(RECORD.read_text())
    changed = [key for key, digest in step_digests().items() if recorded.get(key) != digest]
    assert not changed, (
        f"the code of {changed} changed: if what the step writes changes, bump it in tasks/versions.py; "
        "either way, record the code with `python -m tests.tasks.test_versions` (see this test's docstring)")


if __name__ == "__main__":
    RECORD.write_text(json.dumps(step_digests(), indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORD}")
