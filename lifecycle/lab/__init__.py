"""The lab: a small real task system (task table, JSON API, Dramatiq actor, fault
switches) attached like any other application, through ``lifecycle.client``."""
