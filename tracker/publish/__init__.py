"""Numbers ready to publish: one typed record of a run's or job's publishable facts
(facts.py), rendered as Hugging Face model-card metadata (card.py) or as a statement for a
paper or report in Markdown, LaTeX, plain text or JSON (statement.py). Readers only: nothing
here writes into a run directory.
"""

from __future__ import annotations

from .facts import PublishFacts, Water, facts_from_dir, facts_from_summary

__all__ = ["PublishFacts", "Water", "facts_from_dir", "facts_from_summary"]
