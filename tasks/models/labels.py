"""Labels: ImageNet's ``imagenet_class_index.json`` or a text file with one label a line, and the
target class's index in them (matched after lower-casing and turning ``_``/``-`` into spaces)."""

from __future__ import annotations

import difflib
import json
import warnings
from pathlib import Path

from ace.tasks.errors import ACEInputError

PACKAGED_LABELS = Path(__file__).with_name("imagenet_class_index.json")


def _norm(label: str) -> str:
    return " ".join(label.lower().replace("_", " ").replace("-", " ").split())


def load_labels(path: str | Path | None) -> list[str]:
    """Class names by index, from ImageNet's ``imagenet_class_index.json`` (or any ``{"i": [id, name]}``
    / ``{"i": name}`` / list JSON) or a text file with one label a line. ``None``: the packaged
    ImageNet index."""
    path = Path(path) if path else PACKAGED_LABELS
    if not path.is_file():
        if path.name == PACKAGED_LABELS.name:
            warnings.warn(f"--labels_path {path} not found: using the packaged ImageNet class index")
            path = PACKAGED_LABELS
        else:
            raise ACEInputError(f"--labels_path {path} does not exist: pass imagenet_class_index.json or a "
                                "text file with one label a line")
    what = "imagenet_class_index.json or a text file with one label a line"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ACEInputError(f"--labels_path {path} is not a text file (not UTF-8): pass {what}") from None
    except OSError as e:
        raise ACEInputError(f"--labels_path {path} cannot be read ({e.strerror}): pass {what}") from None
    if "\x00" in text:
        raise ACEInputError(f"--labels_path {path} is a binary file: pass {what}")
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        try:
            data = json.loads(text)
            if isinstance(data, dict):
                items = sorted(data.items(), key=lambda kv: int(kv[0]))
                labels = [v[-1] if isinstance(v, list) else v for _, v in items]
            elif isinstance(data, list):
                labels = [v[-1] if isinstance(v, list) else v for v in data]
            else:
                raise ValueError("not an object or a list")
            if not all(isinstance(v, str) for v in labels):
                raise ValueError("labels must be strings")
        except (ValueError, TypeError, IndexError) as e:
            raise ACEInputError(f"--labels_path {path} is not a valid class index ({str(e)[:120]}): pass {what} "
                                '(JSON like {"0": ["n01440764", "tench"], ...})') from None
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ACEInputError(f"--labels_path {path} holds no labels: pass {what}")
    return labels


def class_index(labels: list[str], target: str) -> int:
    """Index of ``target`` in ``labels``, matched after lower-casing and turning ``_``/``-`` into spaces.
    Labels with synonyms (``"tiger, Panthera tigris"``) also match on their first name."""
    want = _norm(target)
    for i, label in enumerate(labels):
        if _norm(label) == want or _norm(label.split(",")[0]) == want:
            return i
    close = difflib.get_close_matches(want, [_norm(l) for l in labels], n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    raise ACEInputError(f"--target_class {target!r} is not in the labels file.{hint}")
