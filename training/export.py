"""ONNX export of a trained network (raw features in; fraud probability and logit out), parity."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import onnxruntime as ort
import torch
from torch import nn

logger = logging.getLogger(__name__)

ONNX_INPUT = "features"
ONNX_OUTPUT = "fraud_probability"
#: The calibrated logit the probability is the sigmoid of: explanations attribute it exactly,
#: where ``log(p / (1 - p))`` of a float32 probability saturates at p = 1.
ONNX_LOGIT_OUTPUT = "fraud_logit"
OPSET = 18


class ProbabilityHead(nn.Module):
    """Wraps a logit network so the exported graph returns probabilities (and the logit)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logit = self.network(features)
        return torch.sigmoid(logit), logit


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
            output_names=[ONNX_OUTPUT, ONNX_LOGIT_OUTPUT],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def add_tree_member(path: Path, booster: Any, weight: float) -> None:
    """Add ``weight`` times the LightGBM `booster`'s raw score to the logit of the graph at `path`.

    The graph (from `export_onnx`) computes the network's share of the logit. The booster
    becomes one ``ai.onnx.ml`` TreeEnsembleRegressor node reading the same input, its leaf
    values scaled by `weight`, so it yields the trees' share of the logit; the sigmoid that
    makes the probability output moves after the new logit.
    """
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnx.load(str(path))
    graph = model.graph
    sigmoid = next((n for n in graph.node if ONNX_OUTPUT in n.output), None)
    if sigmoid is None or sigmoid.op_type != "Sigmoid":
        raise ValueError(f"{path.name}: {ONNX_OUTPUT} is not the sigmoid of the logit")
    network_logit = "network_logit"
    for node in graph.node:
        node.input[:] = [network_logit if n == ONNX_LOGIT_OUTPUT else n for n in node.input]
        node.output[:] = [network_logit if n == ONNX_LOGIT_OUTPUT else n for n in node.output]
    moved = onnx.NodeProto()
    moved.CopyFrom(sigmoid)
    moved.input[0] = ONNX_LOGIT_OUTPUT
    graph.node.remove(sigmoid)  # re-appended after the nodes that make its new input

    n_features = graph.input[0].type.tensor_type.shape.dim[1].dim_value
    converted = convert_lightgbm(
        booster,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=15,
    )
    (classifier,) = [n for n in converted.graph.node if n.op_type == "TreeEnsembleClassifier"]
    tree = _weighted_regressor(classifier, weight, output="trees_share_column")
    graph.initializer.append(
        onnx.numpy_helper.from_array(np.array([1], dtype=np.int64), "trees_share_axis")
    )
    graph.node.extend(
        [
            tree,
            onnx.helper.make_node(
                "Squeeze", ["trees_share_column", "trees_share_axis"], ["trees_share"]
            ),
            onnx.helper.make_node("Add", [network_logit, "trees_share"], [ONNX_LOGIT_OUTPUT]),
            moved,
        ]
    )
    if not any(o.domain == "ai.onnx.ml" for o in model.opset_import):
        model.opset_import.extend(o for o in converted.opset_import if o.domain == "ai.onnx.ml")
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    logger.info("Added a LightGBM booster to %s (weight %.4f)", path.name, weight)


def _weighted_regressor(classifier: onnx.NodeProto, weight: float, output: str) -> onnx.NodeProto:
    """The binary TreeEnsembleClassifier `classifier` as a regressor of ``weight`` times its
    raw score, read from `ONNX_INPUT` into `output` (one column).

    onnxmltools emits a classifier, whose label output and per-class scores ONNX Runtime
    computes for every row; the regressor's one column took 15-30% less time here (145
    trees, one batch of 8-64 rows repeated), and the weight folded into the leaves saves the
    Gather and Mul that picked and scaled the fraud column.
    """
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in classifier.attribute}
    if set(attributes["class_ids"]) != {0} or len(attributes["classlabels_int64s"]) != 2:
        raise ValueError("expected a binary booster with one score per leaf")
    if attributes.get("base_values"):
        raise ValueError("expected a booster without base values")
    leaves = np.asarray(attributes["class_weights"], dtype=np.float64) * weight
    return onnx.helper.make_node(
        "TreeEnsembleRegressor",
        inputs=[ONNX_INPUT],
        outputs=[output],
        name="trees",
        domain="ai.onnx.ml",
        n_targets=1,
        post_transform="NONE",
        target_ids=[0] * len(leaves),
        target_nodeids=list(attributes["class_nodeids"]),
        target_treeids=list(attributes["class_treeids"]),
        target_weights=leaves.astype(np.float32).tolist(),
        **{name: value for name, value in attributes.items() if name.startswith("nodes_")},
    )


def convert_to_fp16(path: Path) -> int:
    """Rewrite the graph at `path` to compute in float16 after its first LayerNormalization.

    Everything up to and including that normalisation stays float32: raw features reach
    172,792 (``Time``) or 1e9 (the API's limit), beyond float16's 65,504, and so can their
    scaled values and token embeddings; the normalised output is bounded. Input and output
    stay float32. Returns how many nodes were kept in float32.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(path))
    nodes = list(model.graph.node)
    first_norm = next((i for i, n in enumerate(nodes) if n.op_type == "LayerNormalization"), None)
    if first_norm is None:
        raise ValueError(
            f"{path.name} has no LayerNormalization: float16 export is for the DistilBERT model"
        )
    keep = [n.name for n in nodes[: first_norm + 1]]
    converted = convert_float_to_float16(model, keep_io_types=True, node_block_list=keep)
    _drop_round_trip_casts(converted.graph)
    onnx.save(converted, str(path))
    logger.info(
        "Converted %s to float16 (%d of %d nodes kept float32)", path.name, len(keep), len(nodes)
    )
    return len(keep)


def _cast_target(node: onnx.NodeProto) -> int | None:
    if node.op_type != "Cast":
        return None
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _drop_round_trip_casts(graph: onnx.GraphProto) -> None:
    """Bypass float32 -> float16 -> float32 cast pairs, then delete the casts left unused.

    onnxruntime's converter routes even the edges between two float32-kept nodes through
    float16, which would overflow exactly the values that are kept float32 for that reason.
    """
    producer = {out: node for node in graph.node for out in node.output}
    bypass: dict[str, str] = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if (
            _cast_target(node) == onnx.TensorProto.FLOAT
            and source is not None
            and _cast_target(source) == onnx.TensorProto.FLOAT16
        ):
            bypass[node.output[0]] = source.input[0]
    for node in graph.node:
        node.input[:] = [bypass.get(name, name) for name in node.input]
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def torch_logits(network: nn.Module, features: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """Fraud logits from the torch network in eval mode, batched, on the network's device."""
    network.eval()
    device = next(network.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(features), batch_size):
            chunk = torch.as_tensor(features[start : start + batch_size]).to(device)
            out.append(network(chunk).float().cpu().numpy())
    return np.concatenate(out)


def torch_probabilities(
    network: nn.Module, features: np.ndarray, batch_size: int = 4096
) -> np.ndarray:
    """Probabilities from the torch network in eval mode (what the ONNX graph computes)."""
    return probabilities_from_logits(torch_logits(network, features, batch_size))


def probabilities_from_logits(logits: np.ndarray) -> np.ndarray:
    """``sigmoid(logits)`` in float64, returned as float32 (what the graph's output holds)."""
    return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)


#: Raw features in, fraud probabilities out: the reference an exported graph must match.
ProbabilityFunction = Callable[[np.ndarray], np.ndarray]


def check_parity(
    model: nn.Module | ProbabilityFunction,
    path: Path,
    features: np.ndarray,
    tolerance: float = 1e-4,
) -> float:
    """Max |p_onnx - p_reference| over `features`; raises `OnnxParityError` above `tolerance`.

    `model` is the torch network, or a function giving the probabilities the graph must
    reproduce (a network blended with gradient-boosted trees).
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_p,) = session.run([ONNX_OUTPUT], {ONNX_INPUT: features.astype(np.float32)})
    expected = (
        torch_probabilities(model, features) if isinstance(model, nn.Module) else model(features)
    )
    diff = float(np.max(np.abs(onnx_p.reshape(-1) - expected)))
    if not diff < tolerance:
        raise OnnxParityError(
            f"ONNX export of {path.name} differs from torch by {diff:.2e} (tolerance {tolerance})"
        )
    logger.info("ONNX parity on %d rows: max abs diff %.2e", len(features), diff)
    return diff
