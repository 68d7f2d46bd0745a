"""The live feed: one LISTEN per process that reads the event table's new rows exactly once
(``listener``), fanned out to subscribers by task (``hub``).

It may import the event schema, runtime and sql; never the web.
"""
