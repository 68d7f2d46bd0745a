"""Who may do what: the roles, people's accounts, machine tokens, login throttling and event
quotas.

It may import runtime and the models; nothing else of the engine.
"""
