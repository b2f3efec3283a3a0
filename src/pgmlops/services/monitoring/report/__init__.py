"""The self-contained HTML monitoring report (`pgmlops monitor --html`, GET /monitoring/report)."""

from pgmlops.services.monitoring.report.charts import bar_chart
from pgmlops.services.monitoring.report.document import render_html

__all__ = ["bar_chart", "render_html"]
