"""Distributed jobs: one job per launch, every device measured once, one report.

A layer above the run (a run stays one process's crash-safe directory):
  identity.py       which job, rank and node this process is, from the launcher's environment
  claims.py         who measures which device (node-local locks on device UUIDs; CPU/RAM per
                    node)
  layout.py         the job directory: job.json, a folder per node, a run directory per process
  member.py         this process's part: its directory, its claimed devices, ending the job
  participation.py  a tracker's part in the job: joining at start, late claims, adoption,
                    ending it at stop (what the Tracker calls)
  align.py          matching windows that several ranks recorded
  windows.py        the job's windows from its members' (matched, energies summed)
  merge.py          run directories -> the members' inputs (devices counted once, nodes,
                    attempts, missing ranks), built into the job's summary by the same
                    summary_build.assemble as a run's (a pure function of the files)
  view.py           the job's summary as a rank sees it at its stop (partial while others run)
  totals.py         job-wide numbers for training logs, with one collective at logging points
"""
