"""Self-contained HTML reports of runs and experiments (``jaxmem report DIR``), rendered from what
scoring and the analyses wrote; a report computes nothing.

A run's report holds what was run (seed, data, design, model, optimizer, epochs) and its
provenance (versions, devices, flags, date; which shards differ), its summary table, attack table
and log-log ROC curves (down to the lowest FPR every target can measure), the memorization
histogram, the most-memorized training examples with their given label and the label predicted
by the models that did not train on them (majority vote), and the convergence of the estimate
as models are added. An experiment's report holds its summary and tables, its figures, and one
section per variant linking to the variant's own report. Every image is embedded as a base64
PNG, so the file can be viewed offline and moved freely.
"""

from jaxmem.report.experiment import experiment_html, write_report
from jaxmem.report.figures import plot_most_memorized
from jaxmem.report.run import run_html
from jaxmem.report.show import example_text, run_text

__all__ = ["write_report", "run_html", "experiment_html", "plot_most_memorized",
           "run_text", "example_text"]
