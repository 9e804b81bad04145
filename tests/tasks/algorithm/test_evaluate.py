import numpy as np

from ace.tasks.algorithm.evaluate import assign, concept_centres, random_like, union_masks
from ace.tasks.algorithm.patches import make_patch


def test_centres_radii_and_assignment():
    emb = np.array([[0.0, 0], [2, 0], [10, 10], [12, 10]])
    labels = np.array([0, 0, 1, 1])
    centres, radii = concept_centres(emb, labels, [1, 0])
    np.testing.assert_allclose(centres, [[11, 10], [1, 0]])
    np.testing.assert_allclose(radii, [1, 1])
    # nearest centre within its radius, else -1 (the point at (5, 5) would not have joined either cluster)
    np.testing.assert_array_equal(assign(np.array([[1.5, 0], [11, 10.5], [5, 5]]), centres, radii), [1, 0, -1])
    assert (assign(np.zeros((2, 2)), np.zeros((0, 2)), np.zeros(0)) == -1).all()


def test_masks_random_superpixels_and_composition():
    masks = np.zeros((4, 2, 2), bool)
    masks[0, 0, 0] = masks[1, 1, 1] = masks[2, 0, 1] = masks[3, 1, 0] = True
    image_index = np.array([0, 0, 1, 1])
    chosen = np.array([True, False, False, False])
    keep = union_masks(masks, image_index, chosen, 2)
    assert keep[0, 0, 0] and keep.sum() == 1
    rand = random_like(image_index, chosen, np.random.default_rng(0))
    assert rand[:2].sum() == 1 and rand[2:].sum() == 0  # as many as chosen, in the same image
    images = np.full((2, 2, 2, 3), 200, np.uint8)
    out = make_patch(images, keep, (10 / 255, 20 / 255, 30 / 255))  # a batch at once, as the evaluation uses it
    assert tuple(out[0, 0, 0]) == (200, 200, 200) and tuple(out[0, 1, 1]) == (10, 20, 30)
