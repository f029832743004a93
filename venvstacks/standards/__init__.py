"""Pure implementations of the packaging standards the tool needs: PEP 440 versions, PEP 508 requirements
and markers, wheel file names and tags, and a TOML writer. No I/O, nothing venvstacks-specific.
"""
