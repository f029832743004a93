"""Building locked layers into environments: the build itself
(`builder.py`), what it checks and fixes afterwards (`installed.py`, `dynlib.py`, `portability.py`,
`scripts.py`), and offline bundles (`bundle.py`).
"""
