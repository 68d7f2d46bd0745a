"""The event store: the append-only event log and its reads (eventlog), long histories in
windows (outline), retention, imports of exported timelines, and the home page's search.

It may import the event schema, the models, the history facts, runtime, people and sql;
never check, timeline, scenarios or the web.
"""
