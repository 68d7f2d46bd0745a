"""The benchmarks (``make bench``, ``python -m bench``): each figure beside its target and a
baseline measured in the same run. Not installed with the app; imports ``lifecycle`` and
``dashboard``, and nothing imports it."""
