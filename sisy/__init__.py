"""Sisy: cron-style background tasks for Django on Channels 1.x."""

__version__ = '1.0.0'

# Django < 3.2 needs this to find SisyConfig when only 'sisy' is installed.
default_app_config = 'sisy.apps.SisyConfig'
