"""Command lines with their secrets taken out, before they are written to run.json.

run.json is meant to be shared (mode 0644, copied with the run), and people pass tokens on
the command line (`--hub_token hf_...`, `--api-key=...`, `WANDB_API_KEY=... python x.py`).
A value is redacted when the flag before it (or the `name=` part of `name=value`) looks like a
secret, or when the value itself has the shape of a well-known token. The flag stays, so the
command line is still readable; run.json says how many values were taken out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

REDACTED = "<redacted>"

# A flag or variable name that holds a secret: token, secret, password, passwd, api key,
# credential(s), private key, auth. Matched on the name with dashes/underscores as separators.
_SECRET_NAME = re.compile(
    r"(^|[-_.])(token|secret|password|passwd|pwd|apikey|api[-_]key|access[-_]key|"
    r"credentials?|private[-_]key|auth)($|[-_.])", re.IGNORECASE)

# Values that are tokens whatever flag carries them (Hugging Face, GitHub, OpenAI-style, AWS
# access key ids, Slack, JWTs).
_TOKEN_VALUE = re.compile(
    r"^(hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|"
    r"sk-[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|xox[abprs]-[A-Za-z0-9-]{10,}|"
    r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})$")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name.lstrip("-")))


def redact_argv(argv: Sequence[str]) -> tuple[list[str], int]:
    """(the command line with secret values replaced by REDACTED, how many were replaced)."""
    out: list[str] = []
    count = 0
    secret_next = False
    for arg in argv:
        arg = str(arg)
        if secret_next:
            secret_next = False
            if not arg.startswith("-") or arg == "-":
                out.append(REDACTED)
                count += 1
                continue
        if _TOKEN_VALUE.match(arg):
            out.append(REDACTED)
            count += 1
            continue
        name, eq, value = arg.partition("=")
        if eq and value and is_secret_name(name):
            out.append(f"{name}={REDACTED}")
            count += 1
            continue
        if eq and _TOKEN_VALUE.match(value):
            out.append(f"{name}={REDACTED}")
            count += 1
            continue
        if arg.startswith("-") and not eq and is_secret_name(arg):
            secret_next = True
        out.append(arg)
    return out, count


__all__ = ["REDACTED", "is_secret_name", "redact_argv"]
