"""The HTML study of runs and sweeps (``build_report``), and its PDF through headless Chromium."""

from aelab.report.build import build_report

__all__ = ["build_report"]
