"""Training plumbing shared by both trainers: checkpoints, run records, image loading."""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch


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
