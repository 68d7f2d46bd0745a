"""Template tags of the dashboard's templates (``{% load dashboard %}``); they render
through ``dashboard.render`` and run no query."""
