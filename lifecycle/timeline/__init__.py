"""A task's history laid out for people and tools: lanes and links (layout), a task's page
and where its live connection starts (page, catch_up), two runs side by side (compare), an
OTLP trace, and the heavy exports' slots.

It may import everything of the engine below it (store, check, history, words, statuses,
runtime); never scenarios or the web.
"""
