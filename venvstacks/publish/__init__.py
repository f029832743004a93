"""Publishing built layers: what goes into an archive (`members.py`), reproducible archives (`archive.py`), the layer manifest inside them
(`manifest.py`), the published metadata (`metadata.py`), and the publish and local-export runs
(`publisher.py`).
"""
