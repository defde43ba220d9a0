"""Where the energy went, and what to do about it: the run's (or job's) breakdown, findings
measured on the run, and the reports people read (terminal, self-contained HTML).

  breakdown.py  parts of the IT energy that add up (steps, gaps, eval, ...), idle GPU energy
  advice.py     findings with the numbers they come from, only when the data supports them
  html.py       one offline HTML file (plotly from the `report` extra, inlined)
  terminal.py   a power sparkline and breakdown bars for `energy-tracker report` on a TTY
"""
