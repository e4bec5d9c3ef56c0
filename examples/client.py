"""Score transactions against a running service (``make serve``) with BentoML's client.

.venv/bin/python examples/client.py [http://localhost:3000]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import bentoml

from fraud_detection.client import score_frame
from training.data import generate_transactions

url = sys.argv[1] if len(sys.argv) > 1 else "http://localhost:3000"
request = json.loads((Path(__file__).parent / "request.json").read_text())

with bentoml.SyncHTTPClient(url) as client:
    for result in client.predict(transactions=request["transactions"]):
        print(result)
    frame = generate_transactions(2000, fraud_rate=0.01, seed=42)
    scored = score_frame(client, frame, chunk_size=500)
    print(scored.assign(Class=frame["Class"]).groupby("Class")["fraud_probability"].describe())
