"""Scenarios and the runs that prove them: the catalogue read from TOML files, the probe that
runs one like an end-to-end test, the fault suite and its faults.

It may import store, check, capture, runtime and the models; never the web.
"""
