"""Self-contained HTML reports with embedded matplotlib figures (no files beside the page).

* :mod:`pipeline.reports.html`: the building blocks (:func:`~pipeline.reports.html.page`,
  :class:`~pipeline.reports.html.Section`, figures as ``data:`` URIs, tables); the
  experiment-suite report reuses them.
* :mod:`pipeline.reports.figures`: Agg figures of HSI and seismic stores, each as PNG bytes.
* :mod:`pipeline.reports.dataset`: the dataset report of one published version
  (:func:`~pipeline.reports.dataset.render_dataset_report`,
  :func:`~pipeline.reports.dataset.write_dataset_report`).
"""

from pipeline.reports.dataset import (
    REPORT_FILE,
    dataset_figures,
    dataset_sections,
    render_dataset_report,
    report_path,
    write_dataset_report,
)
from pipeline.reports.html import Section, data_uri, figure_html, page, table_html

__all__ = [
    "REPORT_FILE",
    "Section",
    "data_uri",
    "dataset_figures",
    "dataset_sections",
    "figure_html",
    "page",
    "render_dataset_report",
    "report_path",
    "table_html",
    "write_dataset_report",
]
