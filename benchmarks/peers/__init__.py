"""Peer serving frameworks next to our BentoML service: the same ONNX model, the same JSON API.

``python -m benchmarks.peers`` (``make bench-peers``) runs the comparison (`harness`). Each
peer lives in ``benchmarks/peers/<peer>/`` (``server.py`` and a pinned ``requirements.txt``)
and runs in its own venv, ``.venv-peers/<peer>``. `common` is what the peer servers share;
it imports only numpy, onnxruntime and pydantic (through `fraud_detection`), and so does this
package's ``__init__``: nothing here may import more.
"""
