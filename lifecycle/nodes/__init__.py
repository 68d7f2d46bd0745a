"""A deployment of several nodes: which roles a node runs and what it does once (deployment),
the elected roles (election), each node's heartbeat, and the deployment's status.

It may import runtime, store, capture, check and the models; never timeline, scenarios or
the web.
"""
