"""The stack specification: its model (`model.py`), and reading and checking `venvstacks.toml` into it
(`load.py` and its helpers; `issues.py` collects the problems found).
"""
