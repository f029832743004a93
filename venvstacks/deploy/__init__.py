"""Deploying published archives into a folder and checking a deployment (`deployer.py`), compiling
bytecode while archives are unpacked (`compileahead.py`).
"""
