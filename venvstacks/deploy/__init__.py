"""Deploying published archives into a folder (`deployer.py`, with `stack.py`, `swap.py` and
`compileahead.py`), the records deploy keeps (`records.py`), and checking a deployment (`verify.py`).
"""
