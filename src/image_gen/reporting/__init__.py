"""Reporting: what pipelines achieve (metrics from the registry) and the comparison report (Markdown, HTML, PNG)."""
