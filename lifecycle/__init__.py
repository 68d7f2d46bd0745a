"""The engine: the event schema and store, capture, the live feed, the checker, the
timeline and compare, scenarios and the probe, and the lab. It never imports ``dashboard``.

``lifecycle.client`` is the part other applications import; it needs no Django.
"""
