"""The web face: settings, urls, asgi and routing, the pages, the JSON API, the websocket
consumers, the HTML fragments and template tags. It may import ``lifecycle``; nothing
under ``lifecycle`` imports it."""
