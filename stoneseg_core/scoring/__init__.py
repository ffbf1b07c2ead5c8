"""Scores: pixel metrics and stone-level scores of a prediction against the truth."""
