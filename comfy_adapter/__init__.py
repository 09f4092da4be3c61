"""The one place where FlowAnime touches ComfyUI's internals.

Everything else in the pack is either a core (samplers/, model_sampling/flow.py, prompt/,
resolution/: torch and plain Python, no ComfyUI import anywhere, tested by
tests/test_boundary.py) or a thin node class in nodes/ that calls a core and this package.
After a ComfyUI release, this package is what to check, module by module:

- model_sampling.py: ComfyUI's model-sampling classes (ModelSamplingDiscreteFlow + CONST), the
  constructor convention `type(original)(model_config)` + `set_parameters(...)`, `noise_scale`,
  ModelSamplingAV; the patcher's object patches and the model config's sampling settings.
- latent.py: the model's latent format (channels, dimensions, `spacial_downscale_ratio`) and the
  `downscale_ratio_spacial` tag of empty latents; ComfyUI's intermediate device and dtype.
- models.py: which checkpoint families this ComfyUI can load (Anima on a ComfyUI without it).
- samplers.py: KSampler's sampler lists, `comfy.k_diffusion.sampling.sample_<name>`, KSAMPLER,
  the denoiser KSAMPLER hands a sampler function, the interrupt check.
- clip.py: the CLIP object's tokenizers (sub-tokenizer attributes, chunk settings, vocabulary).
- prompt_support.py: the user directory (folder_paths) for tag lists, ComfyUI's stock CLIP tokenizer
  and PromptServer's routes, for the editor's live token counter.
- web_folder.py: how ComfyUI's server names a pack's extension URLs (by its folder).

The newer ComfyUI files and commits each module was checked against are named in its docstring
and in the README's Compatibility section. Every ComfyUI import is inside a function, so the pack
imports without ComfyUI.
"""
