"""Sphinx configuration for Sisy's documentation.

Django is set up with the test settings so autodoc can import sisy.models.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'tests.settings')

import django  # noqa: E402

django.setup()

import sisy  # noqa: E402

project = 'Sisy'
author = 'Sisy contributors'
copyright = 'Sisy contributors, MIT License'
version = release = sisy.__version__

extensions = ['sphinx.ext.autodoc', 'sphinx.ext.viewcode']
autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True}
default_role = 'code'
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_theme_options = {'description': 'Cron-style background tasks for Django on Channels 1.x'}
