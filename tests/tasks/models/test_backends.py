"""The OpenVINO backend: the same activations as PyTorch, converted once, and PyTorch where it cannot be used."""

import time
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from ace.tasks.errors import ACEInputError
from ace.tasks.models import backends
from ace.tasks.models.backends import OpenVINOActivations, resolve_backend

needs_openvino = pytest.mark.skipif(not backends.openvino_available(), reason="the openvino package is not installed")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ace.tasks.demo.world import make_world

    return make_world(tmp_path_factory.mktemp("w"), n_per_class=2, n_random=2, num_random_sets=2)


@pytest.fixture(scope="module")
def demo_model(world):
    from ace.tasks.demo.world import DEMO_CLASS
    from ace.tasks.models.loader import resolve

    return resolve("ace_demo_cnn", None, str(world / "labels.txt"), DEMO_CLASS, ["block2", "block3"], precision="fp32")


def test_auto_is_openvino_only_on_a_cpu_where_it_is_installed(monkeypatch):
    assert resolve_backend("torch", "cpu") == "torch"
    assert resolve_backend("auto", "cuda") == "torch"
    monkeypatch.setattr(backends, "openvino_available", lambda: False)
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(ACEInputError, match="--backend openvino: the openvino package is not installed"):
        resolve_backend("openvino", "cpu")
    monkeypatch.setattr(backends, "openvino_available", lambda: True)
    assert resolve_backend("auto", "cpu") == "openvino"
    with pytest.raises(ACEInputError, match="runs on the CPU"):
        resolve_backend("openvino", "cuda")


@needs_openvino
@pytest.mark.parametrize("precision, cosine", [("fp32", 0.99999), ("bf16", 0.999)])
def test_openvino_gives_pytorchs_activations_at_every_layer(demo_model, tmp_path, precision, cosine):
    from ace.tasks.algorithm.forward import layer_activations, to_input
    from ace.tasks.models.loader import using_model

    spec = replace(demo_model.spec, precision=precision, backend="openvino")
    layers = list(demo_model.layers)
    images = np.random.default_rng(0).integers(0, 256, (9, spec.input_size, spec.input_size, 3), dtype=np.uint8)
    x = to_input(images, spec)
    with using_model(spec) as model:
        ref = layer_activations(model, layers, x)
        got = OpenVINOActivations(model, spec, layers, str(tmp_path))(images)
    for layer in layers:
        assert got[layer].shape == ref[layer].shape
        assert got[layer].dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
        cos = torch.nn.functional.cosine_similarity(got[layer].float().reshape(9, -1), ref[layer].reshape(9, -1))
        assert cos.min().item() >= cosine, (layer, cos)


@needs_openvino
def test_the_model_is_converted_once(demo_model, tmp_path, monkeypatch):
    openvino = backends.import_openvino()

    from ace.tasks.models.loader import using_model

    with using_model(demo_model.spec) as model:
        xml = backends.convert(model, demo_model.spec, list(demo_model.layers), tmp_path)
        assert xml.is_file() and xml.with_suffix(".bin").is_file()
        monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: pytest.fail("converted again"))
        assert backends.convert(model, demo_model.spec, list(demo_model.layers), tmp_path) == xml


def _hold_lock(path, seconds, held):
    from ace.storage.atomic import file_lock

    with file_lock(path):
        held.set()
        time.sleep(seconds)


@needs_openvino
def test_processes_compile_one_at_a_time(demo_model, tmp_path):
    """OpenVINO's blob cache has no lock between processes: a process that shares the working dir
    waits while another compiles the same model, then compiles (from the blob)."""
    import multiprocessing as mp

    from ace.tasks.models.loader import using_model

    with using_model(demo_model.spec) as model:
        xml = backends.convert(model, demo_model.spec, list(demo_model.layers), tmp_path)
        held = mp.get_context("fork").Event()
        other = mp.get_context("fork").Process(target=_hold_lock, args=(backends.compile_lock(xml), 3.0, held))
        other.start()
        assert held.wait(30)
        start = time.monotonic()
        runner = OpenVINOActivations(model, replace(demo_model.spec, precision="fp32"), list(demo_model.layers),
                                     str(tmp_path))
        waited = time.monotonic() - start
        other.join()
    assert waited >= 2.0, waited
    images = np.zeros((2, demo_model.spec.input_size, demo_model.spec.input_size, 3), np.uint8)
    assert runner(images)[demo_model.layers[0]].shape[0] == 2


@needs_openvino
def test_a_model_that_does_not_convert_runs_in_pytorch_with_one_warning(demo_model, tmp_path, monkeypatch):
    openvino = backends.import_openvino()

    class DataDependent(torch.nn.Module):  # a branch on values before the layer: a trace would keep one side
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            return self.conv(x if x.sum() > 0 else -x)

    spec = replace(demo_model.spec, backend="openvino")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = backends.activation_runner(DataDependent(), spec, ["conv"], str(tmp_path))
        # tried once: the reason is kept, the next pass neither converts again nor warns again
        monkeypatch.setattr(openvino, "convert_model", lambda *a, **k: pytest.fail("converted again"))
        second = backends.activation_runner(DataDependent(), spec, ["conv"], str(tmp_path))
    said = [str(w.message) for w in caught if "does not convert" in str(w.message)]
    assert first is None and second is None
    assert len(said) == 1 and "the passes run in PyTorch" in said[0], said
    failed = backends.compiled_path(spec, ["conv"], tmp_path).with_suffix(".failed")
    assert failed.read_text().startswith("RuntimeError: the pass up to the layers changes with the input's values")


@needs_openvino
def test_resolve_chooses_openvino_and_the_compile_step_converts(world, tmp_path):
    from ace.tasks.demo.world import DEMO_CLASS
    from ace.tasks.models.loader import resolve, write_compiled

    folder = tmp_path / "compiled"
    model = resolve("ace_demo_cnn", None, str(world / "labels.txt"), DEMO_CLASS, ["block2"], precision="fp32",
                    backend="auto", compiled_dir=str(folder))
    assert model.spec.backend == "openvino"
    assert not folder.exists() or not any(folder.iterdir())  # resolving converts nothing: the step does
    out = backends.compiled_path(model.spec, ["block2"], folder)
    assert write_compiled(model.spec, ["block2"], str(out)) == str(out)
    assert out.is_file() and out.with_suffix(".bin").is_file()
    assert resolve("ace_demo_cnn", None, str(world / "labels.txt"), DEMO_CLASS, ["block2"], precision="fp32",
                   backend="auto", compiled_dir=None).spec.backend == "torch"  # nowhere to keep it


class _Tail(torch.nn.Module):
    """A BatchNorm whose output an in-place ReLU changes, then a head no trace could follow (it
    branches on values and returns a dict); ``shared`` is called twice."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.shared = torch.nn.Conv2d(4, 4, 1)
        self.pair = _Pair()
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)

    def forward(self, x):
        y = torch.relu_(self.bn(self.conv(x)))
        y = self.shared(self.shared(y))
        first, _ = self.pair(y)
        if first.sum() > 0:  # after the layers: never traced
            return {"logits": first.mean((2, 3))}
        return {"logits": -first.mean((2, 3))}


class _Pair(torch.nn.Module):
    def forward(self, y):
        return y * 2, y * 3


@needs_openvino
def test_the_cut_holds_what_pytorchs_hooks_see_and_nothing_after_the_layers(tmp_path):
    # the layers as layer_activations finds them: the BatchNorm's output before the in-place ReLU,
    # a module called twice as the hooks see it, a tuple's first tensor; the head is never traced
    openvino = backends.import_openvino()

    from ace.tasks.algorithm.forward import layer_activations

    torch.manual_seed(0)
    model, layers = _Tail().eval(), ["bn", "shared", "pair"]
    cut = backends._Cut(model, layers, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).eval()
    images = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ov_model = backends._convert(cut, images[:1], [(openvino.PartialShape([-1, 16, 16, 3]), openvino.Type.u8)])
    got = openvino.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(images.numpy())
    ref = layer_activations(model, layers, images.permute(0, 3, 1, 2).float() / 255.0)  # mean 0, std 1 of [0, 1]
    for k, layer in enumerate(layers):
        np.testing.assert_allclose(got[k], ref[layer].numpy(), rtol=1e-4, atol=1e-4)
    assert (ref["bn"] < 0).any()  # the ReLU's change did not reach the BatchNorm's output
    assert not any(op.get_type_name() in ("ReduceMean", "If") for op in ov_model.get_ordered_ops())


def test_the_cut_names_a_layer_the_pass_never_reaches():
    class Skips(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(3, 4, 1)

        def forward(self, x):
            return self.used(x)

    cut = backends._Cut(Skips(), ["used", "unused"], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    with pytest.raises(RuntimeError, match=r"layers \['unused'\] were never called"):
        cut(torch.zeros(1, 8, 8, 3, dtype=torch.uint8))


@needs_openvino
def test_a_branch_on_shapes_converts_and_one_on_values_does_not(monkeypatch):
    # the tracer warns about both; only the trace that differs from the model on other images is refused
    openvino = backends.import_openvino()

    class OnShape(torch.nn.Module):  # pads odd sides, as Swin pads to its window size
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)

        def forward(self, x):
            if torch.tensor(x.shape[-1]) % 2 == 1:
                x = torch.nn.functional.pad(x, (0, 1, 0, 1))
            return self.conv(x)

    class OnValues(OnShape):
        def forward(self, x):
            return self.conv(x * 2 if x.mean() > 0.25 else x)  # the example (zeros) and noise differ here

    inputs = [(openvino.PartialShape([-1, 15, 15, 3]), openvino.Type.u8)]
    example = torch.zeros(1, 15, 15, 3, dtype=torch.uint8)
    images = np.random.default_rng(1).integers(0, 256, (3, 15, 15, 3), dtype=np.uint8)
    checked = []
    original = backends._check_trace
    monkeypatch.setattr(backends, "_check_trace", lambda *a: checked.append(a[-1]) or original(*a))
    shape_cut = backends._Cut(OnShape().eval(), ["conv"], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).eval()
    converted = backends._convert(shape_cut, example, inputs)
    assert checked  # the tracer warned, and the trace was checked
    got = openvino.Core().compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(images)[0]
    with torch.no_grad():
        want = shape_cut(torch.from_numpy(images))[0].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="changes with the input's values"):
        backends._convert(backends._Cut(OnValues().eval(), ["conv"], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)).eval(),
                          example, inputs)


TELEMETRY_PROBE = """
import sys
from openvino_telemetry.backend import backend_ga4

sent = []
backend_ga4.GA4Backend.send = lambda self, message: sent.append(message)  # counted, never sent
if sys.argv[1] == "ace":
    from ace.tasks.models.backends import import_openvino
    openvino = import_openvino()
else:
    import openvino
import torch
openvino.convert_model(torch.nn.Conv2d(3, 4, 3).eval(), example_input=torch.zeros(1, 3, 8, 8))
print(len(sent))
"""


@needs_openvino
@pytest.mark.parametrize("importer", ["plain", "ace"])
def test_openvino_sends_no_telemetry_through_ace(importer, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}  # OpenVINO's CI test
    env["HOME"] = str(tmp_path)  # a user who never ran OpenVINO's opt_in_out: no consent file
    done = subprocess.run([sys.executable, "-c", TELEMETRY_PROBE, importer], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    events = int(done.stdout.split()[-1])
    if importer == "plain":  # what OpenVINO does by default: the reason for import_openvino
        assert events > 0 and (tmp_path / "intel").is_dir()
    else:
        assert events == 0 and not (tmp_path / "intel").exists()


@needs_openvino
@pytest.mark.parametrize("choice", ["1", "0", None])
def test_a_choice_made_with_openvinos_opt_in_out_stands(choice, tmp_path, monkeypatch):
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    for name in ("CI", "TF_BUILD", "JENKINS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    if choice is not None:
        (tmp_path / "intel").mkdir()
        (tmp_path / "intel" / "openvino_telemetry").write_text(choice)
    backends.import_openvino()
    want = {"1": ConsentCheckResult.ACCEPTED, "0": ConsentCheckResult.DECLINED, None: ConsentCheckResult.DECLINED}
    assert OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True) == want[choice]
