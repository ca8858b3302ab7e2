from channels.routing import include

channel_routing = [include('sisy.routing.channel_routing')]
