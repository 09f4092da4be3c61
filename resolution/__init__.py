"""Latent sizes: the aspect-ratio presets the model cards recommend, and each family's constraints."""
