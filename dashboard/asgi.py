"""ASGI entry point: HTTP through Django, websockets through Channels."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
django_asgi_app = get_asgi_application()

from lifecycle.client.logs import install_log_handler  # noqa: E402

# The WARNING+ records logged while serving a task (the lab API) become its events.
install_log_handler("web")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from dashboard.routing import websocket_urlpatterns  # noqa: E402
from dashboard.security import SameOriginWebsockets  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Only this server's own pages (allowed host, and the very host and port) may open
        # one; the session's user must be able to read.
        "websocket": AllowedHostsOriginValidator(
            SameOriginWebsockets(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
        ),
    }
)

# Runs started from a web process that died (kill -9, a restart) are polled on from here,
# so they get their true verdict; only the web processes `lifecycle up` starts adopt.
if os.environ.get("LIFECYCLE_PROCESS_ROLE") == "web":
    from lifecycle.scenarios.probe import start_adopting  # noqa: E402

    start_adopting()

# The long-lived objects of start-up (modules, settings, templates) never become garbage:
# freezing them keeps the collector's full passes short, which are the live push's
# longest pauses.
gc.collect()
gc.freeze()
