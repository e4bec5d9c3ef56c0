"""Online drift detection: a window of scored rows per worker, judged by Evidently.

`monitor.DriftMonitor` is the serving hook; `detector.DriftDetector` is the report both it
and the offline ``python -m training.drift`` command run; `drift_app` serves the results at
``/drift``. Those two modules import Evidently (seconds, ~100 MB), so they are imported from
their modules, only where detection is on; this package's surface stays light.
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
