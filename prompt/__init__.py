"""Prompt tools: the booru-tag normaliser (booru.py)."""
