"""Locking layers with uv: where each layer's lock files live and what they hold (`files.py`), whether a
lock is still valid (`state.py`), editing `pylock.toml` (`pylock.py`), and the lock run (`locker.py`).
"""
