"""Publishing built layers: reproducible archives (`archive.py`), the layer manifest inside them
(`manifest.py`), the published metadata (`metadata.py`), and the publish and local-export runs
(`publisher.py`).
"""
