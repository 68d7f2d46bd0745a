"""The lab: a small real task system (task table, JSON API, Dramatiq actor, fault
switches). Its processes report reads, broker steps and logs through ``lifecycle.client``,
as an attached application's do; it may import the engine, never ``dashboard``."""
