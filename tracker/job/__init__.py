"""Distributed jobs: one job per launch, every device measured once, one report.

A layer above the run (a run stays one process's crash-safe directory):
  identity.py  which job, rank and node this process is, from the launcher's environment
  claims.py    who measures which device (node-local locks on device UUIDs; CPU/RAM per node)
  layout.py    the job directory: job.json, a folder per node, a run directory per process
  member.py    this process's part: joining, late claims, ending the job at stop
  align.py     matching windows that several ranks recorded
  merge.py     run directories -> the job's summary (a pure function of the files)
  totals.py    job-wide numbers for training logs, with one collective at logging points
"""
