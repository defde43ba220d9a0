"""`python -m tracker` is the `energy-tracker` command."""

from .cli import main

raise SystemExit(main())
