"""Thin ComfyUI node classes: schema in, call the core, result out."""
