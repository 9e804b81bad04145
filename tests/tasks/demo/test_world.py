"""The demo world: ACE's source layout, with part masks that match the images."""

import json

import numpy as np
from PIL import Image


def test_the_world_has_the_source_layout_and_true_part_masks(tmp_path):
    from ace.tasks.demo.world import CLASSES, PARTS, make_world

    root = make_world(tmp_path, n_per_class=3, n_random=2, num_random_sets=2)
    assert sorted(p.name for p in root.iterdir()) == sorted([*(c for c in CLASSES if c != "background"),
                                                              "random_discovery", "random500_0", "random500_1",
                                                              "masks", "labels.txt"])
    assert (root / "labels.txt").read_text().split() == list(CLASSES)
    parts = json.loads((root / "masks" / "parts.json").read_text())
    assert parts["parts"] == PARTS and parts["classes"]["disc_square"] == ["disc", "square"]
    img = np.asarray(Image.open(root / "disc_square" / "disc_square_000.png"))
    mask = np.asarray(Image.open(root / "masks" / "disc_square" / "disc_square_000.png"))
    assert img.shape == (64, 64, 3) and mask.shape == (64, 64)
    assert set(np.unique(mask)) == {0, PARTS["disc"], PARTS["square"]}
    disc = img[mask == PARTS["disc"]].mean(0)
    square = img[mask == PARTS["square"]].mean(0)
    assert disc[0] > 150 > disc[2] and square[2] > 150 > square[0]  # a red disc and a blue square
    again = make_world(tmp_path / "again", n_per_class=3, n_random=2, num_random_sets=2)
    assert (again / "disc_square" / "disc_square_000.png").read_bytes() == \
        (root / "disc_square" / "disc_square_000.png").read_bytes()  # seeded
