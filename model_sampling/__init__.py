"""Rectified-flow model sampling: the schedule math (flow.py) and its ComfyUI adapter."""
