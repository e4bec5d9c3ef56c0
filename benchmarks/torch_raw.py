"""Raw PyTorch throughput of a model size from ``configs/model/`` (reference for the GPU path).

    python -m benchmarks.torch_raw --model-config configs/model/distilbert_base.yaml \
        --dtype bf16 --batches 1,32,256,2048

Builds the network at that size with fresh weights (speed does not depend on their values),
on CUDA when present, and times forward passes on 30-feature rows (31 tokens with CLS).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from training.preprocessing import FeatureScaler

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_network(model_config: Path, rows: np.ndarray) -> torch.nn.Module:
    """The ``network`` of a model config file, with scaling fitted on `rows`."""
    network_cfg = OmegaConf.load(model_config).network
    scaler = FeatureScaler.fit(rows)
    kind = "FraudDistilBert" if "n_layers" in network_cfg else "FraudMLP"
    return instantiate(
        {"_target_": f"training.models.{kind}", **OmegaConf.to_container(network_cfg)},
        preprocessing=scaler.to_module(),
    )


def time_batches(
    network: torch.nn.Module,
    rows: np.ndarray,
    batches: list[int],
    dtype: torch.dtype,
    seconds: float,
) -> list[dict[str, float]]:
    """Rows/s and ms per forward pass at each batch size (autocast to `dtype` on CUDA)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    network = network.eval().to(device)
    results = []
    for b in batches:
        x = torch.as_tensor(np.resize(rows, (b, rows.shape[1])), dtype=torch.float32, device=device)

        def step(x: torch.Tensor = x) -> None:
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32),
            ):
                network(x)

        for _ in range(5):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        calls = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            step()
            calls += 1
            if device.type == "cuda" and calls % 10 == 0:
                torch.cuda.synchronize()
        if device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        results.append(
            {
                "batch_size": b,
                "rows_per_s": b * calls / elapsed,
                "ms_per_call": 1e3 * elapsed / calls,
            }
        )
        print(json.dumps(results[-1]), flush=True)
    return results


def main() -> None:
    from benchmarks.request_mix import load_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-config", type=Path, default=Path("configs/model/distilbert_base.yaml")
    )
    parser.add_argument("--dtype", choices=DTYPES, default="bf16")
    parser.add_argument("--batches", default="1,2,4,8,16,32,64,128,256,512,1024,2048")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    rows = load_rows(None, 4096, seed=1)
    network = build_network(args.model_config, rows)
    results = {
        "model_config": str(args.model_config),
        "dtype": args.dtype,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "results": time_batches(
            network,
            rows,
            [int(b) for b in args.batches.split(",")],
            DTYPES[args.dtype],
            args.seconds,
        ),
    }
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
