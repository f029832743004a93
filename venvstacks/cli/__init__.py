"""The command line: parsing and running (`main.py`), one handler per command (`handlers.py`), and the
text `show` renders (`render.py`). The only package that prints or decides the exit status.
"""
