"""Running the engine: its services and their reachability, the process supervisor, connection
strings, the broker, HTTP facts, the allocator and the hot standby.

It imports nothing of the engine but sql and the models; every other package may import it.
"""
