"""`energy-tracker` (also `python -m tracker`): run, report, devices, estimate, replay, regions.

The CLI only parses arguments, calls the library and prints; it holds no measurement logic.
Bad input exits with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from .errors import TrackerError
from .rundir import names
from .units import J_PER_KWH, energy_text

EXIT_USAGE = 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except TrackerError as e:
        print(f"energy-tracker: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:   # one line, not a traceback; ENERGY_TRACKER_DEBUG=1 shows it
        if os.environ.get("ENERGY_TRACKER_DEBUG"):
            raise
        print(f"energy-tracker: error: {type(e).__name__}: {e} (set ENERGY_TRACKER_DEBUG=1 "
              "for the traceback)", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="energy-tracker",
                                description="Measure the energy and CO2e of training runs.")
    sub = p.add_subparsers(metavar="COMMAND")

    r = sub.add_parser("run", help="track a command: energy-tracker run [opts] -- CMD ...")
    r.add_argument("--name", default=None, help="run name (default: the command's name)")
    r.add_argument("--no-status", action="store_true", help="no live status line")
    _add_option_flags(r)   # the tracker's options, from their one declaration (config.py)
    r.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the command to run")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="a run's or a job's summary, or a table of a root")
    rep.add_argument("path", nargs="*", default=["energy-runs"],
                     help="run dir, job dir (several: parts of one job), or a root of runs")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.add_argument("--rebuild", action="store_true",
                     help="recompute the summary from samples.jsonl even if one exists")
    rep.add_argument("--compare-regions", default=None, metavar="CODES",
                     help="what-if: this run's energy under other regions' factors, e.g. DE,FR")
    rep.add_argument("--html", nargs="?", const="", default=None, metavar="OUT",
                     help="also write a self-contained offline HTML report (default "
                          "<dir>/report.html; needs the `report` extra); of a root of runs: "
                          "its index, ROOT/index.html")
    rep.add_argument("--compare", action="store_true",
                     help="several run or job directories side by side (with --html: a page, "
                          "default ./compare.html); a root with --html gets ROOT/index.html")
    rep.set_defaults(func=cmd_report)

    inv = sub.add_parser("inventory", help="monthly kWh, tCO2e and GPU-hours per project and "
                                           "region over roots of runs")
    inv.add_argument("roots", nargs="+", help="roots of runs (output directories), run or job "
                                              "directories")
    inv.add_argument("--csv", nargs="?", const="-", default=None, metavar="OUT",
                     help="write the inventory as CSV to OUT (no OUT: to stdout)")
    inv.add_argument("--json", action="store_true", help="print one JSON object")
    inv.set_defaults(func=cmd_inventory)

    m = sub.add_parser("merge", help="join the parts of one job copied from node-local disks")
    m.add_argument("parts", nargs="+", help="job directories of one job (one per node)")
    m.add_argument("-o", "--output", default=None,
                   help="job directory to write the merged summary.json to (default: the "
                        "first part); its parent's emissions.csv gets the job's row")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_merge)

    d = sub.add_parser("devices", help="what would be measured here, and how")
    d.add_argument("--json", action="store_true")
    d.add_argument("--cpu-tdp", type=float, default=None)
    d.add_argument("--hwmon-root", default=None, metavar="DIR",
                   help="hwmon sysfs tree to read meters from (default /sys/class/hwmon)")
    d.add_argument("--powercap-root", default=None, metavar="DIR",
                   help="powercap sysfs tree to read RAPL from (default /sys/class/powercap)")
    d.set_defaults(func=cmd_devices)

    e = sub.add_parser("estimate", help="planning estimate E = N x P x t x PUE (not measured)")
    e.add_argument("--gpus", type=int, required=True)
    e.add_argument("--gpu-watts", type=float, default=None)
    e.add_argument("--gpu-model", default=None, help="e.g. H100, A100, V100, L4, T4, RTX-4090")
    e.add_argument("--hours", type=float, required=True)
    e.add_argument("--region", default=None)
    e.add_argument("--pue", type=float, default=1.0)
    e.add_argument("--grid-year", type=int, default=None, metavar="YEAR")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=cmd_estimate)

    rp = sub.add_parser("replay", help="replay a recorded NVML trace through the GPU sensor")
    rp.add_argument("trace", type=Path)
    rp.add_argument("--mode", choices=["counter", "sampled", "sampled-instant"],
                    default="counter",
                    help="counter; sampled (no counter: instant and 1 s average power fused); "
                         "sampled-instant (the instant power alone)")
    rp.add_argument("--rate", type=float, default=10.0, help="sampling rate, Hz (default 10)")
    rp.add_argument("--offset", type=float, default=0.0,
                    help="the first tick's delay after the trace starts, s (its phase)")
    rp.add_argument("--json", action="store_true")
    rp.set_defaults(func=cmd_replay)

    c = sub.add_parser("card", help="a run's or job's numbers for a model card or a paper")
    c.add_argument("path", help="run directory or job directory")
    c.add_argument("--format", choices=["md", "latex", "text", "json"], default=None,
                   help="a statement for a paper or report (default without --update: the "
                        "model card's YAML metadata)")
    c.add_argument("--update", default=None, metavar="README.md",
                   help="write co2_eq_emissions into this model card's front matter (only "
                        "this file is written; the rest of it is kept byte for byte)")
    c.add_argument("--training-type", default="training",
                   help="pre-training, fine-tuning, training, inference or evaluation")
    c.add_argument("--wue", type=float, default=None, metavar="L_PER_KWH",
                   help="on-site water usage effectiveness (L/kWh) for a water estimate")
    c.add_argument("--no-embodied", action="store_true", help="leave out embodied emissions")
    c.add_argument("--lifetime-years", type=float, default=None,
                   help="hardware lifetime for the embodied estimate (default 6)")
    c.add_argument("--utilisation", type=float, default=None,
                   help="hardware utilisation over its lifetime, 0-1 (default 0.85)")
    c.set_defaults(func=cmd_card)

    g = sub.add_parser("regions", help="list or search grid regions and their factors")
    g.add_argument("query", nargs="?", default=None)
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_regions)
    return p


# -- run ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from .api import ENV_RUN_DIR, Tracker
    from .config import TrackerConfig

    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise _usage("run needs a command after --, e.g. energy-tracker run -- python train.py")
    script = next((Path(c).stem for c in cmd[1:] if c.endswith(".py")), None)
    from .job.identity import ENV_JOB

    options, sources = _option_values(args)
    job = options.pop("job", None)   # --job names the job of the command's processes
    tracker = Tracker.from_config(TrackerConfig.from_options(
        args.name or script or Path(cmd[0]).name, sources=sources, **options))
    if not args.name:   # a tracked script's own track("name") replaces the file name
        tracker.name_source = "command"
    tracker.start()
    env = dict(os.environ)
    env[ENV_RUN_DIR] = str(tracker.run_dir)
    if job:
        env[ENV_JOB] = job
    try:
        child = subprocess.Popen(cmd, env=env)
    except OSError as e:
        tracker.notes.append(f"the command could not be started: {e}")
        import dataclasses
        tracker.config = dataclasses.replace(tracker.config, quiet=True)   # the error is the line
        tracker.stop("failed")
        raise _usage(f"cannot run {cmd[0]!r}: {e.strerror or e}") from None

    def forward(signum: int, _frame: Any) -> None:
        try:
            child.send_signal(signum)
        except ProcessLookupError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    stop_status = threading.Event()
    status_thread = None
    if sys.stderr.isatty() and not args.no_status:
        status_thread = threading.Thread(target=_status_line, args=(tracker, stop_status),
                                         daemon=True)
        status_thread.start()
    try:
        rc = child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        stop_status.set()
        if status_thread is not None:
            status_thread.join(2)
            print(file=sys.stderr)
    status = ("finished" if rc == 0 else "interrupted" if rc in (-signal.SIGINT, 130)
              else "terminated" if rc in (-signal.SIGTERM, 143) else "failed")
    if rc != 0:
        tracker.notes.append(f"the command exited with status {rc}")
    # stop() prints the run's short block on stderr (unless --quiet / ENERGY_TRACKER_QUIET):
    # the one block of the command (a script joined to this run prints none); the whole
    # summary is `energy-tracker report RUN_DIR`
    tracker.stop(status)
    return rc if rc >= 0 else 128 - rc


def _add_option_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every option declared with one (config.TrackerConfig): bools as
    --x/--no-x, --log-to repeatable, the rest read from text like the option's environment
    variable. A flag not given leaves the option to its variable, then to its default."""
    from .config import OPTIONS

    for opt in OPTIONS.values():
        if opt.cli is None:
            continue
        helptext = opt.cli_help or opt.help
        if opt.env:
            helptext += f" [env {opt.env}]"
        helptext = helptext.replace("%", "%%")
        kw: dict[str, Any] = {"dest": opt.name, "default": argparse.SUPPRESS,
                              "help": helptext}
        if opt.text_kind == "bool":
            parser.add_argument(opt.cli, action=argparse.BooleanOptionalAction, **kw)
        elif opt.name == "log_to":
            parser.add_argument(opt.cli, action="append",
                                choices=["mlflow", "wandb", "tensorboard", "auto"], **kw)
        else:
            parser.add_argument(opt.cli, metavar=opt.metavar, **kw)


def _option_values(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """The options given on the command line, read like their environment variables, and
    where each came from ("command line --flag")."""
    from .config import OPTIONS

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for opt in OPTIONS.values():
        if opt.cli is None or not hasattr(args, opt.name):
            continue
        given = getattr(args, opt.name)
        values[opt.name] = (opt.from_text(given, opt.cli) if isinstance(given, str)
                            else given)
        sources[opt.name] = f"command line {opt.cli}"
    return values, sources


def _status_line(tracker: Any, done: threading.Event) -> None:
    """One refreshed line on the terminal: power, energy, CO2e, elapsed."""
    factor = tracker.factor.gco2_per_kwh
    while not done.wait(1.0):
        try:
            t = tracker.clock()
            e_j = tracker.energy_j()
            w = tracker.recent_power_w() or 0.0
            kwh = e_j * tracker.pue / J_PER_KWH
            mm, ss = divmod(int(t), 60)
            hh, mm = divmod(mm, 60)
            # padded: the line is redrawn in place, a shorter unit must cover the longer one
            sys.stderr.write(f"\r[energy-tracker] {w:8.1f} W  "
                             f"{energy_text(e_j * tracker.pue):>9}  "
                             f"{kwh * factor:.3f} g CO2e  {hh:02d}:{mm:02d}:{ss:02d} ")
            sys.stderr.flush()
        except Exception:
            return


# -- report ------------------------------------------------------------------------------------
def cmd_report(args: argparse.Namespace) -> int:
    from .job.layout import is_job_dir
    from .rundir.names import MANIFEST

    paths = [Path(p) for p in args.path]
    for path in paths:
        if not path.exists():
            raise _usage(f"{path} does not exist (give a run directory, a job directory or a "
                         "root of runs)")
    if args.compare:
        return _compare_report(paths, args)
    single = len(paths) == 1 and (is_job_dir(paths[0]) or (paths[0] / MANIFEST).exists())
    if args.html is not None and not single:
        if len(paths) == 1 and paths[0].is_dir():   # a root of runs: its index page
            from .report.index_page import write_index
            out = write_index(paths[0], Path(args.html) if args.html else None)
            print(f"index: {out}", file=sys.stderr if args.json else sys.stdout)
            return 0 if not args.json else _report_table(paths[0], args)
        raise _usage("--html takes one run directory, one job directory or one root of runs "
                     "(several runs: add --compare)")
    if len(paths) > 1 or is_job_dir(paths[0]):
        if not all(is_job_dir(p) for p in paths):
            raise _usage("several paths must all be parts of one job directory (job.json)")
        data, text = _job_report(paths, rebuild=args.rebuild, write=len(paths) == 1)
    elif (paths[0] / MANIFEST).exists():
        data, text = _run_report(paths[0], rebuild=args.rebuild)
    else:
        return _report_table(paths[0], args)
    if args.compare_regions:
        data, more = _compare(data, args.compare_regions)
        text += "\n" + more
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)
        if sys.stdout.isatty():   # pictures only for a person; pipes get the plain text
            from .report.terminal import render
            extra = render(data, paths[0])
            if extra:
                print(extra)
    if args.html is not None:
        from .report.html import write_html
        target = Path(args.html) if args.html else None
        if target is None and data.get("status") == "running":
            # a live run is written by its owner only: the page goes to the current directory
            target = Path.cwd() / f"{paths[0].name}-report.html"
        out = write_html(paths[0], target)
        # with --json, stdout stays one JSON object
        print(f"report: {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _run_report(path: Path, *, rebuild: bool) -> tuple[dict[str, Any], str]:
    """A run's summary: the saved one, or rebuilt from samples.jsonl (killed or running).

    A reader writes nothing, with one exception: a run whose owner is provably gone without
    a final summary is ended once, as "killed" (finalize.py)."""
    from .rebuild import rebuild_summary
    from .rundir.finalize import finalize_killed_run
    from .rundir.names import MANIFEST, SUMMARY
    from .rundir.runlog import read_json
    from .summary import Summary, read_summary

    old = read_summary(path / SUMMARY, complete=True)   # damaged (types, NaN): rebuilt
    if not (rebuild or old is None or old.get("status") == "running"):
        return old, Summary.from_dict(old).format()
    summary = rebuild_summary(path)
    if summary.status == "killed":
        manifest = read_json(path / MANIFEST) or {}
        try:   # saving is a bonus: a full or read-only disk still gets its report printed
            finalize_killed_run(path, summary, manifest, _csv_root(path, manifest))
        except OSError as e:
            print(f"energy-tracker: note: the rebuilt summary was not saved in {path}: "
                  f"{e.strerror or e}", file=sys.stderr)
    return summary.to_dict(), summary.format()


def _csv_root(run_dir: Path, manifest: dict[str, Any]) -> Optional[Path]:
    """Where the run's owner would have put its emissions row (None: it writes none)."""
    cfg = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
    target = cfg.get("emissions_csv", True) if isinstance(cfg, dict) else True
    if target is False:
        return None
    if isinstance(target, str) and target.endswith(".csv"):
        return Path(target)
    return run_dir.parent


def _job_report(parts: list[Path], *, rebuild: bool, write: bool) -> tuple[dict[str, Any], str]:
    """A job's summary: the saved one when the job has ended, else merged from its members
    (and, for one complete job directory, written with the job's emissions row)."""
    from .job.member import end_job
    from .job.merge import merge
    from .rundir.names import SUMMARY
    from .summary import Summary, read_summary

    old = read_summary(parts[0] / SUMMARY, complete=True) if len(parts) == 1 else None
    if old is not None and old.get("status") != "running" and not rebuild:
        return old, Summary.from_dict(old).format()
    summary = merge(parts)
    if write and summary.status != "running":
        try:
            end_job(parts[0], csv_root=parts[0].parent)
        except OSError as e:
            print(f"energy-tracker: note: the job's summary was not saved in {parts[0]}: "
                  f"{e.strerror or e}", file=sys.stderr)
    return summary.to_dict(), summary.format()


def cmd_merge(args: argparse.Namespace) -> int:
    from .job.layout import is_job_dir
    from .job.merge import merge
    from .rundir.names import SUMMARY
    from .rundir.runlog import upsert_emissions_row, write_json_atomic
    from .summary_build import emissions_row

    parts = [Path(p) for p in args.parts]
    for p in parts:
        if not is_job_dir(p):
            raise _usage(f"{p} is not a job directory (no job.json)")
    summary = merge(parts)
    out = Path(args.output) if args.output else parts[0]
    out.mkdir(parents=True, exist_ok=True)
    if args.output:
        import shutil
        shutil.copyfile(parts[0] / names.JOB_MANIFEST, out / names.JOB_MANIFEST)
    data = summary.to_dict()
    data["notes"].append(f"merged from {len(parts)} part(s): "
                         + ", ".join(str(p) for p in parts))
    write_json_atomic(out / SUMMARY, data)
    if summary.status != "running":
        from .job.merge import read_members
        _, loaded = read_members(parts)
        upsert_emissions_row(out.absolute().parent,
                             emissions_row(summary, loaded[0].member.manifest))
    print(json.dumps(data, indent=2, default=str) if args.json else summary.format())
    return 0


def _compare(data: dict[str, Any], codes_text: str) -> tuple[dict[str, Any], str]:
    from .carbon import cleanest_and_dirtiest, compare_regions
    codes = [c.strip() for c in codes_text.split(",") if c.strip()]
    kwh = data.get("facility_energy_kwh")
    if kwh is None:
        raise _usage("this run has no measured energy to compare")
    rows = compare_regions(kwh, codes)
    # the countries the advice picks from too (carbon/candidates.py: one rule for both)
    best, worst = cleanest_and_dirtiest()
    bounds = {label: compare_regions(kwh, [r.code])[0]
              for label, r in (("cleanest country", best), ("dirtiest country", worst))}
    return dict(data, compare_regions=rows, compare_extremes=bounds), \
        _format_compare(rows, kwh, bounds)


def _format_compare(rows: list[dict[str, Any]], kwh: float,
                    bounds: dict[str, dict[str, Any]]) -> str:
    lines = [f"what-if: {energy_text(kwh * J_PER_KWH)} under other grids (annual factors; "
             "cleanest and dirtiest among countries with a cloud region)"]
    for label, r in [("", r) for r in rows] + [(f" ({k})", v) for k, v in bounds.items()]:
        year = r.get("year") or "n/a"
        lines.append(f"  {r.get('code')!s:<22} {r.get('gco2_per_kwh', 0):8.1f} gCO2e/kWh  "
                     f"{r.get('emissions_g', 0):10.3f} g  {r.get('name', '')}{label}, {year}")
    return "\n".join(lines)


def _table_row(entry: Path, is_job: bool) -> dict[str, Any]:
    from .rebuild import rebuild_summary
    from .rundir.names import SUMMARY
    from .summary import read_summary

    s = read_summary(entry / SUMMARY, complete=True)
    if s is None or s.get("status") == "running":
        if is_job:
            from .job.merge import merge
            s = merge([entry]).to_dict()
        else:
            s = rebuild_summary(entry).to_dict()
    job = s.get("job") or {}
    comps = s.get("components") or {}
    return {"run_dir": str(entry), "kind": "job" if is_job else "run",
            "name": s.get("name"), "status": s.get("status"),
            "started_utc": s.get("started_utc"), "duration_s": s.get("duration_s"),
            "energy_kwh": s.get("energy_kwh"), "emissions_kg": s.get("emissions_kg"),
            "world_size": job.get("world_size"), "nodes": len(job.get("nodes") or ()) or None,
            "methods": {k: v.get("method") for k, v in comps.items() if isinstance(v, dict)}}


def _report_table(root: Path, args: argparse.Namespace) -> int:
    """One line per run and per job under `root` (a job is one line, not one per rank)."""
    from .job.layout import JOB_MANIFEST
    from .rundir.names import MANIFEST

    rows = []
    for entry in sorted(p for p in root.iterdir() if p.is_dir()):
        is_job = (entry / JOB_MANIFEST).exists()
        if not is_job and not (entry / MANIFEST).exists():
            continue
        try:   # one damaged run is one "unreadable" row, never the end of the table
            rows.append(_table_row(entry, is_job))
        except Exception as e:
            rows.append({"run_dir": str(entry), "kind": "job" if is_job else "run",
                         "name": entry.name, "status": "unreadable", "started_utc": None,
                         "duration_s": None, "energy_kwh": None, "emissions_kg": None,
                         "world_size": None, "nodes": None, "methods": {},
                         "error": f"{type(e).__name__}: {e}"[:300]})
    if args.json:
        print(json.dumps({"root": str(root), "runs": rows}, indent=2))
        return 0
    if not rows:
        print(f"no runs under {root}")
        return 0
    from .report.terminal import runs_table
    print(runs_table(rows))   # full names, energy in the unit that fits
    return 0


# -- devices, estimate, replay, regions -------------------------------------------------------
def cmd_devices(args: argparse.Namespace) -> int:
    """What every registered sensor kind finds here (tracker/sensors/registry.py)."""
    from dataclasses import replace

    from .sensors import registry
    from .sensors.base import INCLUDED_IN

    options = registry.Options(cpu_tdp_w=args.cpu_tdp)
    if args.hwmon_root:
        options = replace(options, hwmon_root=args.hwmon_root)
    if args.powercap_root:
        options = replace(options, powercap_root=args.powercap_root)
    kinds: list[registry.KindReport] = []
    found = registry.discover(options, report=kinds)
    sensors, notes = found.sensors, found.notes
    try:
        if args.json:
            print(json.dumps({"devices": [s.info.to_dict() for s in sensors], "notes": notes,
                              "kinds": [k.to_dict() for k in kinds]}, indent=2, default=str))
            return 0
        wn = max([10, *(len(s.name) for s in sensors)])
        wc = max([4, *(len(s.component) for s in sensors)])
        for s in sensors:
            part = s.info.details.get(INCLUDED_IN)
            print(f"{s.name:<{wn}} {s.component:<{wc}} {s.method:<8} {s.info.description}"
                  + (f"  [part of {part}]" if part else ""))
        for n in notes:
            print(f"note: {n}")
        print("sensor kinds: " + "; ".join(
            f"{k.kind.name} ({len(k.devices)} found"
            + (f", {k.kind.source}" if k.kind.source != "built-in" else "")
            + (f", extra [{k.kind.extra}]" if k.kind.extra else "") + ")" for k in kinds))
        return 0
    finally:
        for s in sensors:
            try:
                s.close()
            except Exception:
                pass


def cmd_estimate(args: argparse.Namespace) -> int:
    from .estimate import estimate

    est = estimate(gpus=args.gpus, hours=args.hours, gpu_watts=args.gpu_watts,
                   gpu_model=args.gpu_model, region=args.region, pue=args.pue,
                   grid_year=args.grid_year)
    print(json.dumps(est.to_dict(), indent=2) if args.json else est.format())
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import format_result, replay

    result = replay(args.trace, mode=args.mode, rate_hz=args.rate, offset_s=args.offset)
    print(json.dumps(result.to_dict(), indent=2) if args.json
          else format_result(result, args.trace))
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    """Model-card metadata or a statement (tracker/publish); reads the run, writes only the
    --update file."""
    from .publish.cli import card_command
    return card_command(args)


def _compare_report(paths: list[Path], args: argparse.Namespace) -> int:
    """`report RUN1 RUN2 ... --compare [--html [OUT]]`: the runs side by side."""
    from .report.compare import compare_runs, write_compare

    if args.html is not None:
        out, comp = write_compare(paths, Path(args.html) if args.html else None)
    else:
        out, comp = None, compare_runs(paths, Path.cwd())
    print(json.dumps(comp.to_dict(), indent=2, default=str) if args.json else comp.format())
    if out is not None:
        print(f"comparison: {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_inventory(args: argparse.Namespace) -> int:
    """Monthly inventory over roots of runs (tracker/accounting/inventory.py); reads only."""
    from .accounting.inventory import inventory

    roots = [Path(r) for r in args.roots]
    for r in roots:
        if not r.is_dir():
            raise _usage(f"{r} is not a directory (give roots of runs, or run/job directories)")
    inv = inventory(roots)
    if args.csv is not None and args.csv != "-":
        from .rundir.runlog import write_text_atomic
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(args.csv), inv.to_csv())
    if args.json:
        print(json.dumps(inv.to_dict(), indent=2, default=str))
    elif args.csv == "-":
        sys.stdout.write(inv.to_csv())
    else:
        print(f"{'month':<9}{'project':<20}{'region':<14}{'kWh':>14}{'t CO2e':>14}"
              f"{'GPU-h':>10}{'runs':>6}  factor (source, year); month split")
        for row in inv.rows:
            c = row.csv_row()
            print(f"{row.month:<9}{row.project[:19]:<20}{row.region[:13]:<14}"
                  f"{row.facility_energy_kwh:>14.6g}{row.emissions_tco2e:>14.6g}"
                  f"{row.gpu_hours:>10.4g}{len(row.entries):>6}  {c['factor']} "
                  f"({c['factor_source'][:60]}, {c['factor_year']}); {c['split_basis']}")
        print(f"{inv.entries} runs/jobs counted; location-based; facility energy (IT x PUE); "
              "months in UTC")
        for n in inv.notes:
            print(f"note: {n}")
    if args.csv not in (None, "-"):
        print(f"inventory: {args.csv}", file=sys.stderr)
    return 0


def cmd_regions(args: argparse.Namespace) -> int:
    from .carbon import search

    regions = search(args.query)
    if args.json:
        print(json.dumps([r.to_dict() for r in regions], indent=2))
        return 0
    if not regions:
        print(f"no region matches {args.query!r}")
        return 1
    for r in regions:
        year = r.year if r.year is not None else "n/a"
        print(f"{r.code:<26} {r.gco2_per_kwh:8.1f}  {year!s:<5} {r.name[:40]:<40} "
              f"{r.source.split(',')[0][:60]}")
    print(f"{len(regions)} regions (gCO2e/kWh, year, name, source)")
    return 0


def _usage(message: str) -> TrackerError:
    from .errors import ConfigError
    return ConfigError(message)


if __name__ == "__main__":
    raise SystemExit(main())

