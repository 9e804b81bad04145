import numpy as np

from ace.tasks.algorithm.groundtruth import parts_file, part_shares, score_ground_truth


def test_part_shares_count_each_superpixels_pixels():
    part_maps = np.zeros((1, 4, 4), np.uint8)
    part_maps[0, :2, :2] = 1  # a 2x2 part
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :] = True  # half on the part
    masks[1, 2:, :] = True  # all background
    shares = part_shares(masks, np.array([0, 0]), part_maps, 3)
    np.testing.assert_allclose(shares, [[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])


def test_best_concept_purity_recall_and_background_concepts():
    # rows 0-3 on the disc (id 1), 4-5 on the square (id 2), 6-9 background
    shares = np.zeros((10, 3))
    shares[:4, 1] = 1.0
    shares[4:6, 2] = 0.9
    shares[4:6, 0] = 0.1
    shares[6:, 0] = 1.0
    examples = {"a": [0, 1, 6], "b": [4, 5], "c": [7, 8, 9], "d": [2, 3]}
    members = {"a": [0, 1, 6], "b": [4, 5], "c": [7, 8, 9], "d": [2, 3]}
    block = score_ground_truth(shares, examples, members, raising=["a", "b", "d"], significant=["a", "b", "c", "d"],
                               parts={"disc": 1, "square": 2}, causal=["disc", "square"])
    assert block["parts"]["disc"] == {"superpixels_on_part": 4, "concept": "d", "purity": 1.0, "recall": 0.5, "size": 2}
    assert block["parts"]["square"]["concept"] == "b" and block["parts"]["square"]["purity"] == 1.0
    assert block["parts"]["square"]["recall"] == 1.0
    assert block["background_significant"] == 1 and block["background_concepts"] == ["c"]


def test_no_masks_no_ground_truth(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "a.png").write_bytes(b"")
    assert parts_file([str(tmp_path / "cls" / "a.png")]) is None
