"""Capture: committed row changes become events, by a trigger in the inspector's own database
(trigger) or an application's (outbox), what is watched, and the follower that copies each
outbox out.

It may import the event schema, the models, the history facts, runtime and sql; never check,
timeline, scenarios or the web.
"""
