"""`energy-tracker card`: the CLI side of tracker/publish (argument checks, output)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..errors import ConfigError
from .card import card_metadata, metadata_yaml, update_front_matter
from .facts import facts_from_dir
from .statement import render


def card_command(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise ConfigError(f"{path} does not exist (give a run directory or a job directory)")
    if args.format and args.update:
        raise ConfigError("--format prints a statement and --update writes a model card: give "
                          "one of them")
    if args.wue is not None and not 0.0 <= args.wue <= 20.0:
        raise ConfigError(f"--wue {args.wue:g} is out of range [0, 20] L/kWh (data centres "
                          "report about 0.1-2)")
    if args.lifetime_years is not None and not 0.5 <= args.lifetime_years <= 30:
        raise ConfigError(f"--lifetime-years {args.lifetime_years:g} is out of range [0.5, 30]")
    if args.utilisation is not None and not 0.0 < args.utilisation <= 1.0:
        raise ConfigError(f"--utilisation {args.utilisation:g} is out of range (0, 1]")
    facts = facts_from_dir(path, training_type=args.training_type,
                           embodied=not args.no_embodied, wue_l_per_kwh=args.wue,
                           lifetime_years=args.lifetime_years, utilisation=args.utilisation)
    if args.update:
        target = Path(args.update)
        if target.is_dir():
            raise ConfigError(f"--update {target} is a directory; give the card file "
                              "(README.md)")
        old = target.read_bytes().decode("utf-8") if target.exists() else ""  # CRLF kept
        new = update_front_matter(old, card_metadata(facts))
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(new, encoding="utf-8", newline="")
        os.replace(tmp, target)
        print(f"card: {target}", file=sys.stderr)
        return 0
    if args.format:
        sys.stdout.write(render(facts, args.format))
    else:
        sys.stdout.write("---\n" + metadata_yaml(card_metadata(facts)) + "---\n")
    return 0
