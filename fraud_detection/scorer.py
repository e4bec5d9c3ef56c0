"""`OnnxScorer`: fraud probabilities from a stored ONNX graph with ONNX Runtime."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fraud_detection.catalog import CARD_FILE
from fraud_detection.catalog import ONNX_FILE
from fraud_detection.model_card import ModelCard
from fraud_detection.schema import N_FEATURES

logger = logging.getLogger(__name__)


def select_providers(available: list[str] | None = None) -> list[str]:
    """CUDA first when this onnxruntime build can see a GPU, CPU always as the fallback."""
    available = ort.get_available_providers() if available is None else available
    preferred = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in preferred if p in available]


def preload_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the ``nvidia-*`` pip packages (onnxruntime-gpu's extras).

    Without this, onnxruntime-gpu finds them only on the system library path, and the CUDA
    provider silently falls back to CPU.
    """
    preload = getattr(ort, "preload_dlls", None)  # onnxruntime-gpu >= 1.21 only
    if preload is None:
        return
    try:
        preload()
    except Exception as e:  # missing pip CUDA packages: system libraries may still work
        logger.warning("onnxruntime.preload_dlls() failed (%s); using system CUDA libraries", e)


@dataclass(frozen=True)
class OnnxScorer:
    """Scores rows of the 30 raw features (schema order); scaling happens inside the graph."""

    session: ort.InferenceSession
    card: ModelCard

    @classmethod
    def from_directory(
        cls,
        path: str | Path,
        *,
        providers: list[str] | None = None,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
    ) -> OnnxScorer:
        """Load `model.onnx` and `card.json` from a model-store directory, checking both.

        Thread counts of 0 are ONNX Runtime's defaults (one intra-op thread per core)."""
        path = Path(path)
        card = ModelCard.from_json_file(path / CARD_FILE)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        # Idle pool threads would otherwise spin for the next run, taking CPU from the HTTP
        # workers that share the machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = providers or select_providers()
        if "CUDAExecutionProvider" in providers:
            preload_cuda_libraries()
        try:
            session = ort.InferenceSession(
                str(path / ONNX_FILE),
                sess_options=options,
                providers=providers,
            )
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ValueError(f"Cannot load ONNX graph {path / ONNX_FILE}: {e}") from e
        inputs = session.get_inputs()
        if [i.name for i in inputs] != [card.onnx_input] or inputs[0].shape[-1] != N_FEATURES:
            raise ValueError(
                f"{path / ONNX_FILE}: expected one input {card.onnx_input!r} "
                f"of width {N_FEATURES}, "
                f"found {[(i.name, i.shape) for i in inputs]}"
            )
        logger.info(
            "Loaded %s model from %s on %s; decision threshold %.6g (rule %s)",
            card.kind,
            path,
            session.get_providers(),
            card.threshold.value,
            card.threshold.rule,
        )
        return cls(session=session, card=card)

    @property
    def threshold(self) -> float:
        return self.card.threshold.value

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Fraud probability per row of a ``(n, 30)`` array."""
        (proba,) = self.session.run([self.card.onnx_output], self._feed(features))
        return proba.reshape(-1)

    def _feed(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """The session's input for a ``(n, 30)`` array, checked and made float32."""
        if features.ndim != 2 or features.shape[1] != N_FEATURES:
            raise ValueError(f"expected shape (n, {N_FEATURES}), got {features.shape}")
        return {self.card.onnx_input: np.ascontiguousarray(features, dtype=np.float32)}

    def predict_with_logits(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fraud probability and calibrated logit per row, from one session call.

        Raises `ValueError` for a model exported before the graph had a logit output.
        """
        if self.card.onnx_logit_output is None:
            raise ValueError(
                f"{self.card.kind} model has no logit output (exported by an older version); "
                "retrain it to explain its scores"
            )
        proba, logit = self.session.run(
            [self.card.onnx_output, self.card.onnx_logit_output], self._feed(features)
        )
        return proba.reshape(-1), logit.reshape(-1)
