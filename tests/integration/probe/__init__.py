"""A tiny app whose task function records each run it makes, for the real-process tests."""
