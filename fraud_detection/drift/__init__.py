"""Online drift detection: a window of scored rows per worker, judged by Evidently's method.

`monitor.DriftMonitor` is the serving hook; `detector.DriftDetector` computes the numbers
(online, milliseconds) and the Evidently report (``/drift/report`` and the offline
``python -m training.drift`` command); `drift_app` serves the results at ``/drift``. The
detector imports scipy, and Evidently (seconds, ~200 MB) only when a report is built, so the
two modules are imported from their modules, only where detection is on.
"""

from fraud_detection.drift.config import DriftConfig
from fraud_detection.drift.endpoints import drift_app
from fraud_detection.drift.reference import ReferenceProfile
from fraud_detection.drift.results_dir import ResultsDirectory
from fraud_detection.drift.summary import DriftSummary
from fraud_detection.drift.summary import MergedDriftSummary
from fraud_detection.drift.window import DriftWindow

__all__ = [
    "DriftConfig",
    "DriftSummary",
    "DriftWindow",
    "MergedDriftSummary",
    "ReferenceProfile",
    "ResultsDirectory",
    "drift_app",
]
