"""The live feed: one LISTEN per process following the event table exactly once
(``listener``), fanned out to subscribers by task (``hub``). Imports only the engine."""
