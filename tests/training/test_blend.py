"""alprd_train.blend on the shipped reader and a perturbed copy of it: the ends of the blend are the two
files' functions, the middle is each weight's midpoint, and files of two networks are refused."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MODELS
from onnx import numpy_helper

from alprd_train.blend import blend, main


def perturbed(path, out, seed=0):
    model = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if np.issubdtype(a.dtype, np.floating):
            noisy = a + rng.normal(0, 0.05, a.shape).astype(a.dtype) * (np.abs(a).mean() + 1e-6)
            init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    onnx.save(model, str(out))
    return out


def weights(path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def run(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def test_the_ends_are_the_two_files_and_the_middle_is_each_weights_midpoint(tmp_path):
    warm = MODELS / "plate_ocr.onnx"
    tuned = perturbed(warm, tmp_path / "tuned.onnx")
    x = np.random.default_rng(1).uniform(0, 1, (2, 1, 64, 128)).astype(np.float32)
    assert not np.allclose(run(warm, x), run(tuned, x), atol=1e-4)  # the copy is another function
    for alpha, expected in ((0.0, warm), (1.0, tuned)):
        assert blend(warm, tuned, alpha, tmp_path / f"b{alpha}.onnx") > 40
        np.testing.assert_allclose(run(tmp_path / f"b{alpha}.onnx", x), run(expected, x), atol=1e-5)
    blend(warm, tuned, 0.5, tmp_path / "mid.onnx")
    w, t, m = weights(warm), weights(tuned), weights(tmp_path / "mid.onnx")
    floats = [n for n in m if np.issubdtype(m[n].dtype, np.floating)]
    assert floats and all(np.allclose(m[n], (w[n] + t[n]) / 2, atol=1e-6) for n in floats)


@pytest.mark.parametrize("other, says", [("plate_detector.onnx", "not exports of one network"),
                                         ("plate_ocr_int8.onnx", "blend the float files")])
def test_files_of_two_networks_or_an_int8_file_are_refused_in_one_line(tmp_path, capsys, other, says):
    assert main([str(MODELS / "plate_ocr.onnx"), str(MODELS / other), "--alpha", "0.5",
                 "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and not (tmp_path / "x.onnx").exists()


def test_a_part_blend_keeps_the_other_part_the_warm_files(tmp_path):
    warm = MODELS / "plate_ocr.onnx"
    tuned = perturbed(warm, tmp_path / "tuned.onnx")
    blend(warm, tuned, 1.0, tmp_path / "rest.onnx", part="rest")
    conv_inputs = {i for n in onnx.load(str(tmp_path / "rest.onnx")).graph.node if n.op_type == "Conv" for i in n.input}
    w, t, got = weights(warm), weights(tuned), weights(tmp_path / "rest.onnx")
    floats = [n for n in got if np.issubdtype(got[n].dtype, np.floating)]
    convs, rest = [n for n in floats if n in conv_inputs], [n for n in floats if n not in conv_inputs]
    assert convs and rest
    assert all(np.array_equal(got[n], w[n]) for n in convs) and all(np.array_equal(got[n], t[n]) for n in rest)


def test_last_pt_exports_its_moving_average_and_best_pt_its_own_weights():
    import torch

    from alprd_train.common import MovingAverage, exported_weights

    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ema = MovingAverage(net, 0.5, None)
    for _ in range(2):  # the first update copies the weights, the second averages
        with torch.no_grad():
            net[0].weight.add_(1.0)
        ema.update(net)
    last = {"model": net.state_dict(), **ema.checkpoint()}
    weights = exported_weights(last)
    assert weights.keys() == net.state_dict().keys()
    assert not torch.equal(weights["0.weight"], net.state_dict()["0.weight"])
    assert torch.equal(weights["0.weight"], ema.kept.state_dict()["0.weight"])
    assert torch.equal(exported_weights({"model": net.state_dict()})["0.weight"], net.state_dict()["0.weight"])
