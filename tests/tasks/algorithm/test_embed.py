import numpy as np
import torch
from torch import nn

from ace.tasks.algorithm.forward import class_logit_gradients, layer_activations, to_input
from ace.tasks.models.layouts import channel_mean
from ace.tasks.models.loader import ModelSpec


class Branchy(nn.Module):
    """Not a plain chain: a skip connection and a functional op between modules."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(4, 4, 3, padding=1))
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        s = self.stem(x)
        y = self.body(s.clone()) + s
        return self.head(torch.relu(y).mean((2, 3)))


SPEC = ModelSpec("t", None, 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_to_input_normalises_and_the_mean_fill_maps_to_zero():
    batch = np.full((1, 2, 2, 3), 128, np.uint8)
    x = to_input(batch, SPEC)
    assert x.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(x.numpy(), (128 / 255 - 0.5) / 0.25, atol=1e-6)
    from ace.tasks.algorithm.patches import fill_uint8

    fill = fill_uint8(SPEC.fill_value("mean"))
    assert abs(float(to_input(np.broadcast_to(fill, (1, 1, 1, 3)), SPEC).abs().max())) < 0.01


def test_activations_of_nested_layers_match_manual_forward():
    m = Branchy().eval()
    x = torch.randn(5, 3, 8, 8)
    acts = layer_activations(m, ["stem", "body.1"], x)
    with torch.no_grad():
        s = m.stem(x)
        np.testing.assert_allclose(acts["stem"].numpy(), s.numpy(), rtol=1e-5)
        np.testing.assert_allclose(acts["body.1"].numpy(), m.body(s.clone()).numpy(), rtol=1e-5, atol=1e-6)
    # batching does not change values
    one = layer_activations(m, ["body.1"], x[:1])["body.1"]
    np.testing.assert_allclose(one.numpy(), acts["body.1"][:1].numpy(), rtol=1e-5, atol=1e-6)
    assert channel_mean(acts["stem"].numpy()).shape == (5, 4)


def test_gradients_match_autograd_and_a_linear_model():
    m = Branchy().eval()
    x = torch.randn(4, 3, 8, 8)
    grads, logits = class_logit_gradients(m, ["stem"], x, 2)
    assert grads["stem"].shape == (4, 4, 8, 8) and logits.shape == (4, 3)
    # per image: the same as differentiating that image alone
    for i in range(4):
        xi = x[i:i + 1]
        s = m.stem(xi).detach().requires_grad_(True)
        y = m.body(s.clone()) + s
        out = m.head(torch.relu(y).mean((2, 3)))
        (g,) = torch.autograd.grad(out[0, 2], s)
        np.testing.assert_allclose(grads["stem"][i], g[0].numpy(), rtol=1e-4, atol=1e-6)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    grads, _ = class_logit_gradients(lin, ["0"], torch.randn(3, 3, 2, 2), 1)
    np.testing.assert_allclose(grads["0"], np.tile(lin[1].weight[1].detach().numpy(), (3, 1)), rtol=1e-6)


def test_write_activations_several_layers_one_pass(tmp_path):
    from ace.storage.tables import ArrayTable, write_table
    from ace.tasks.algorithm.embed import write_activations, write_gradients
    from ace.tasks.models.loader import resolve_model
    from ace.tasks.algorithm.sources import ImageTable

    spec = resolve_model("ace_demo_cnn")
    imgs = np.random.default_rng(0).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    src = str(write_table(tmp_path / "i.parquet", image=imgs))
    outs = [str(tmp_path / "a2.parquet"), str(tmp_path / "a3.parquet")]
    write_activations(spec, ["block2", "block3"], ImageTable(src), "crop", outs, batch_size=2)
    a2, a3 = ArrayTable(outs[0]), ArrayTable(outs[1])
    assert a2.read("act").shape == (5, 32, 16, 16) and a3.read("act").shape == (5, 64, 8, 8)
    np.testing.assert_allclose(a3.read("mean"), a3.read("act").mean((2, 3)), rtol=1e-5, atol=1e-6)
    g = [str(tmp_path / "g3.parquet")]
    write_gradients(spec, ["block3"], src, 0, "crop", g)
    t = ArrayTable(g[0])
    assert t.read("grad").shape == (5, 64, 8, 8) and len(t.read("predicted")) == 5
