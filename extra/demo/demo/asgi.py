"""The channel layer daphne serves: `daphne demo.asgi:channel_layer`."""
import os

from channels.asgi import get_channel_layer

os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'demo.settings')

channel_layer = get_channel_layer()
