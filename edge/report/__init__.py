"""The session report: one self-contained HTML page of what the device learned (`firstwords report`)."""

from firstwords.edge.report.build import ReportResult, build_report
from firstwords.edge.report.data import Criterion

__all__ = ["Criterion", "ReportResult", "build_report"]
