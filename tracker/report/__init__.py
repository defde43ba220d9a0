"""The reports people read (terminal, self-contained HTML): they render a run's (or job's)
summary, breakdown and findings, computed below them in `tracker.accounting`.

  html.py       one offline HTML file: scan.py reads the logs into model.py's Data,
                render.py draws it from page/ (template, CSS, SVG charts.js)
  terminal.py   a power sparkline and breakdown bars for `energy-tracker report` on a TTY
"""
