"""Where the energy went, and what to do about it: the numbers below every report.

  breakdown.py  parts of the IT energy that add up (steps, gaps, eval, ...), idle GPU energy
  advice.py     findings with the numbers they come from, only when the data supports them
  steps.py      the summary's steps part: one step grouping, J/sample and J/token, a job's steps
  price.py      the electricity price (checked from the options) and the summary's cost part
  parts.py      the base of the summary's typed parts (written and read as their JSON objects)

Pure functions of a run's (or job's) curves, windows and summary: the summary builder, the
steps ledger, replay and the job merge compute with them, and `tracker.report` only renders
their results. Kept below the report (it imports nothing from `tracker.report`, the API, the
CLI or the exporters) so the layers that produce numbers never depend on the ones that show them.
"""
