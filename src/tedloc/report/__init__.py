"""Reports of results: one self-contained HTML page for a recipe folder, a run, an evaluation or a protocol
table (``tedloc report``), and the gallery of test images it shows (``tedloc evaluate --save-vis``)."""
from tedloc.report.html import HEADLINE_METRICS, gallery_indices, gallery_pictures, write_protocol_report, write_report

__all__ = ["write_report", "write_protocol_report", "gallery_pictures", "gallery_indices", "HEADLINE_METRICS"]
