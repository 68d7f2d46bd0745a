"""The checker and what keeps its findings: the rules over one task's history and their
registry (kinds, causes, fixes), stored findings, a live page's findings, and the
maintainer.

It may import the event schema, statuses, the history facts, store, capture, runtime and
sql; never timeline, scenarios or the web.
"""
