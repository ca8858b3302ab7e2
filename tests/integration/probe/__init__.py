"""A tiny app whose task function records each run it makes, for the real-process tests."""

default_app_config = 'tests.integration.probe.apps.ProbeConfig'
