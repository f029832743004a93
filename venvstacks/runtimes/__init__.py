"""Runtime layers' Pythons: python-build-standalone archive names and hashes (`pbs.py`), and unpacking a
runtime archive into the build folder (`unpack.py`). Locking and building both need an unpacked runtime.
"""
