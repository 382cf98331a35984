"""Contracts on the wire: subject names and message bodies (DESIGN 2.4).

Imported by plugin processes, so only the standard library is used here.
"""
