"""Channel routing: Sisy's consumers. HTTP goes to Django's views by default."""
from channels.routing import include

channel_routing = [
    include('sisy.routing.channel_routing'),
]
