"""The analyst console: static pages at ``/ui`` that call the service's own API from the browser.

No build step and no network at run time: the HTML, JavaScript and CSS ship in this package
(and so in the bento), and plotly.js comes from the ``plotly`` package the image already has
for Evidently's reports.
"""

from fraud_detection.console.app import ConsoleLimits
from fraud_detection.console.app import ConsoleRoutes
from fraud_detection.console.app import console_app

__all__ = ["ConsoleLimits", "ConsoleRoutes", "console_app"]
