"""ONNX export of a trained network (raw features in, fraud probability out) and parity check."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

logger = logging.getLogger(__name__)

ONNX_INPUT = "features"
ONNX_OUTPUT = "fraud_probability"
OPSET = 18


class ProbabilityHead(nn.Module):
    """Wraps a logit network so the exported graph returns probabilities."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.network(features))


class OnnxParityError(RuntimeError):
    """ONNX Runtime and torch disagree beyond the tolerance."""


def export_onnx(network: nn.Module, path: Path, example: np.ndarray) -> None:
    """Write `network` to `path` with a dynamic batch axis, in eval mode, on CPU."""
    module = ProbabilityHead(network).eval().cpu()
    sample = torch.as_tensor(example[:8], dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def torch_probabilities(
    network: nn.Module, features: np.ndarray, batch_size: int = 4096
) -> np.ndarray:
    """Probabilities from the torch network in eval mode, batched, on the network's device."""
    module = ProbabilityHead(network).eval()
    device = next(network.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            chunk = torch.as_tensor(features[start : start + batch_size]).to(device)
            out.append(module(chunk).float().cpu().numpy())
    return np.concatenate(out)


def check_parity(
    network: nn.Module, path: Path, features: np.ndarray, tolerance: float = 1e-4
) -> float:
    """Max |p_onnx - p_torch| over `features`; raises `OnnxParityError` above `tolerance`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_p,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: features.astype(np.float32)})
    diff = float(np.max(np.abs(onnx_p.reshape(-1) - torch_probabilities(network, features))))
    if not diff < tolerance:
        raise OnnxParityError(
            f"ONNX export of {path.name} differs from torch by {diff:.2e} (tolerance {tolerance})"
        )
    logger.info("ONNX parity on %d rows: max abs diff %.2e", len(features), diff)
    return diff
