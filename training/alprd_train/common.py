"""Training plumbing shared by both trainers: checkpoints, run records, image loading."""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from alprd.errors import UserError


def add_ema_argument(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--ema", type=_ema_decay, default=0.0, metavar="DECAY",
                    help="evaluate, keep and export an exponential moving average of the weights with this "
                         "decay per step (e.g. 0.998); 0: the weights as trained")


def _ema_decay(value: str) -> float:
    try:
        decay = float(value)
    except ValueError:
        decay = -1.0
    if not 0.0 <= decay < 1.0:
        raise UserError(f"--ema {value}: give a decay per step in 0..1 (e.g. 0.998), or 0 for no average")
    return decay


class MovingAverage:
    """The exponential moving average of a network's weights and batch-norm statistics that a run
    with `--ema` evaluates, keeps and exports (`kept`), resumed from a checkpoint's "ema" where it
    has one; with decay 0 every call is a no-op and `kept` is the network itself. Continuation runs
    swing by points of dev figures from one evaluation to the next; the average over the last few
    hundred steps is not one draw from that swing."""

    def __init__(self, net: torch.nn.Module, decay: float, checkpoint: dict[str, Any] | None):
        self.decay = decay
        self.average = torch.optim.swa_utils.AveragedModel(
            net, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(decay), use_buffers=True) if decay else None
        if self.average is not None and checkpoint and "ema" in checkpoint:
            self.average.load_state_dict(checkpoint["ema"])
        self.kept: torch.nn.Module = self.average.module if self.average is not None else net

    def update(self, net: torch.nn.Module) -> None:
        if self.average is not None:
            self.average.update_parameters(net)

    def record(self) -> dict[str, float]:
        """What an evaluation's record adds: the decay, when the figures are the average's."""
        return {"ema": self.decay} if self.average is not None else {}

    def checkpoint(self) -> dict[str, Any]:
        """What last.pt adds so that a resumed run carries the average on."""
        return {"ema": self.average.state_dict()} if self.average is not None else {}


def load_image(path: Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return img


def save_checkpoint(path: Path, **state: Any) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # never leave a half-written checkpoint behind a crash


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def exported_weights(ck: dict[str, Any]) -> dict[str, Any]:
    """The weights an export of a loaded checkpoint takes: best.pt's (already the evaluated ones),
    or the moving average that last.pt carries when the run kept one (its raw weights otherwise)."""
    if "ema" in ck:
        return {k.removeprefix("module."): v for k, v in ck["ema"].items() if k != "n_averaged"}
    return ck["model"]


class RunRecord:
    """Appends what a training run did (data, settings, metrics) to <out>/run.json."""

    def __init__(self, out: Path, kind: str, settings: dict[str, Any]):
        self.path = out / "run.json"
        self.data: dict[str, Any] = {
            "kind": kind,
            "settings": settings,
            "torch": torch.__version__,
            "host": platform.node(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "evals": [],
        }
        if self.path.exists():
            old = json.loads(self.path.read_text())
            self.data["evals"] = old.get("evals", [])
            self.data["resumed_from"] = old.get("started")

    def add_eval(self, step: int, metrics: dict[str, Any]) -> None:
        self.data["evals"].append({"step": step, **metrics})
        self.flush()

    def set(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.flush()

    def flush(self) -> None:
        self.path.write_text(json.dumps(self.data, indent=2))


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path, input_name: str,
                output_names: list[str], dynamic_axes: dict[str, dict[int, str]]) -> None:
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(model, (example,), str(path), input_names=[input_name], output_names=output_names,
                      dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)


# OneCycleLR divides by its warm-up length in steps less one, so a warm-up share that comes to exactly
# one step (5 % of a 20-step smoke run) fails inside torch with ZeroDivisionError. Runs of 5 steps and
# more warm up for at least 2.5 steps; shorter ones (tests) keep a share that comes to under one.


def one_cycle(opt: torch.optim.Optimizer, max_lr: float | list[float], steps: int,
              warm_up: float) -> torch.optim.lr_scheduler.OneCycleLR:
    """The trainers' one-cycle schedule: `warm_up` of the steps rising to `max_lr`, then annealing."""
    share = max(warm_up, 2.5 / steps) if steps >= 5 else warm_up
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=steps, pct_start=share)


def resume_schedule(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.OneCycleLR, saved: dict[str, Any],
                    step: int, total_steps: int) -> torch.optim.lr_scheduler.OneCycleLR:
    """Continue a one-cycle schedule. When the run's length was changed on resume (a longer or
    shorter budget), the cycle is rebuilt for the new length and fast-forwarded to `step`, so the
    learning rate still anneals to the end of the new budget."""
    if saved.get("total_steps") == total_steps:
        sched.load_state_dict(saved)
        return sched
    print(f"schedule resized from {saved.get('total_steps')} to {total_steps} steps", flush=True)
    for group in opt.param_groups:
        group["lr"] = group["initial_lr"]
    with warnings.catch_warnings():  # stepping the schedule alone is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(min(step, total_steps - 1)):
            sched.step()
    return sched


def take_step(loss: torch.Tensor, net: torch.nn.Module, opt: torch.optim.Optimizer,
              sched: torch.optim.lr_scheduler.OneCycleLR, ema: MovingAverage, clip: float = 0.0) -> None:
    """One optimiser step on `loss` (gradients clipped to norm `clip` if given), the schedule's
    step, and the moving average's."""
    opt.zero_grad()
    loss.backward()
    if clip:
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    opt.step()
    sched.step()
    ema.update(net)


def keep_checkpoints(out: Path, score: float, best: float, step: int, metrics: dict[str, Any],
                     net: torch.nn.Module, opt: torch.optim.Optimizer,
                     sched: torch.optim.lr_scheduler.OneCycleLR, ema: MovingAverage, **extra: Any) -> float:
    """After an evaluation: best.pt (what is evaluated and exported) if `score` beats `best`, and
    always last.pt, which resume_run continues from; `extra` goes into both. Returns the new best."""
    if score > best:
        best = score
        save_checkpoint(out / "best.pt", model=ema.kept.state_dict(), step=step, metrics=metrics, **extra)
    save_checkpoint(out / "last.pt", model=net.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(),
                    step=step, best=best, **extra, **ema.checkpoint())
    return best


def resume_run(ck: dict[str, Any] | None, net: torch.nn.Module, opt: torch.optim.Optimizer,
               sched: torch.optim.lr_scheduler.OneCycleLR, total_steps: int
               ) -> tuple[int, float, torch.optim.lr_scheduler.OneCycleLR]:
    """(step, best score, schedule) of a run: a new one's, or those of `ck` (last.pt), whose weights
    and optimiser state are loaded into net and opt."""
    if not ck:
        return 0, -1.0, sched
    net.load_state_dict(ck["model"])
    opt.load_state_dict(ck["opt"])
    print(f"resumed at step {ck['step']}", flush=True)
    return ck["step"], ck["best"], resume_schedule(opt, sched, ck["sched"], ck["step"], total_steps)


def named(weights: dict[str, Any], name: str) -> str | None:
    """The ONNX initializer of a parameter, under the export wrapper's prefix (`net.head.bias`)."""
    return next((k for k in weights if k == name or k.endswith("." + name)), None)


def warm_start(net: torch.nn.Module, onnx_path: Path, calibration: torch.Tensor) -> None:
    """Load a shipped model's weights from its ONNX, to continue training from it (checkpoints do
    not outlive a training machine; the shipped ONNX does).

    The exporter folds each batch norm into the convolution before it, so the ONNX holds one weight
    and bias per convolution, in execution order. Each convolution takes its folded weight; a batch
    norm after it is set to undo its own normalisation on the calibration batch (scale = that
    batch's std, shift = its mean + the folded bias) and to use those statistics when evaluating,
    so the net computes the shipped function in eval mode and very nearly so in training."""
    import onnx
    from onnx import numpy_helper
    from torch import nn

    model = onnx.load(str(onnx_path))
    if any(n.op_type == "DequantizeLinear" for n in model.graph.node):
        raise UserError(f"{onnx_path}: an int8 model, whose weights training cannot take up; start from "
                        "its float original (models/plate_ocr.onnx for the shipped reader)")
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    folded = [(weights[n.input[1]], weights[n.input[2]] if len(n.input) > 2 else None)
              for n in model.graph.node if n.op_type == "Conv"]
    order: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: order.append(mod))
             for m in net.modules() if isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear)]
    net.eval()
    with torch.no_grad():
        net(calibration[:1])
    for h in hooks:
        h.remove()
    convs = [m for m in order if isinstance(m, nn.Conv2d)]
    if len(convs) != len(folded) or any(tuple(c.weight.shape) != w.shape for c, (w, _) in zip(convs, folded)):
        raise ValueError(f"{onnx_path}: its convolutions are not those of this network "
                         f"({len(folded)} in the file, {len(convs)} here)")
    bias_of: dict[int, torch.Tensor] = {}
    with torch.no_grad():
        for conv, (w, b) in zip(convs, folded):
            conv.weight.copy_(torch.from_numpy(w.copy()))
            bias = torch.from_numpy(b.copy()) if b is not None else torch.zeros(w.shape[0])
            at = order.index(conv) + 1
            nxt = order[at] if at < len(order) else None
            if isinstance(nxt, nn.BatchNorm2d):
                bias_of[id(nxt)] = bias
                if conv.bias is not None:
                    conv.bias.zero_()
            elif conv.bias is not None:
                conv.bias.copy_(bias)
        # A Gemm keeps its layer's name in the ONNX (the slot reader's head); a Linear applied to a
        # sequence becomes a MatMul whose transposed weight is unnamed, so those are taken in
        # execution order. Everything else (biases, layer norms, learned tokens) keeps its name.
        matmuls = [weights[n.input[1]] for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
        # Convolutions are set above and batch norms are calibrated below.
        done = {id(p) for m in order if isinstance(m, nn.Conv2d | nn.BatchNorm2d) for p in m.parameters()}
        module_names = {id(m): n for n, m in net.named_modules()}
        for mod in order:
            if not isinstance(mod, nn.Linear):
                continue
            name = module_names[id(mod)]
            key = named(weights, f"{name}.weight")
            w = weights[key] if key else matmuls.pop(0).T if matmuls else None
            if w is None or w.shape != tuple(mod.weight.shape):
                raise ValueError(f"{onnx_path}: no weight for layer {name}")
            mod.weight.copy_(torch.from_numpy(w.copy()))
            done.add(id(mod.weight))
        for name, p in net.named_parameters():
            if id(p) in done:
                continue
            key = named(weights, name)
            if key is None or weights[key].shape != tuple(p.shape):
                raise ValueError(f"{onnx_path}: no weight for {name}")
            p.copy_(torch.from_numpy(weights[key].copy()))

    def calibrate(bn: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean + bias_of[id(bn)])
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)

    bns = [m for m in order if isinstance(m, nn.BatchNorm2d)]
    if len(bns) != len(bias_of):
        raise ValueError(f"{onnx_path}: a batch norm of this network does not follow a convolution")
    hooks = [bn.register_forward_pre_hook(calibrate) for bn in bns]
    with torch.no_grad():
        net.train()
        net(calibration)  # each norm calibrates on its input as the forward pass reaches it
    for h in hooks:
        h.remove()
