"""The Runge-Kutta ODE samplers inside the real ComfyUI: KSampler entries, the SAMPLER node with
SamplerCustomAdvanced, progress and previews, interrupts, faults, CFG 1."""

import copy
import math

import flowanime_testkit as kit
import pytest
import torch

ODE_DEFAULTS = dict(method="dopri5", log10_rtol=-2.5, log10_atol=-3.5, max_model_calls=300, sigma_min=0.001)


@pytest.mark.parametrize("family", ["sd15", "sd3"])
@pytest.mark.parametrize("sampler", ["flowanime_dopri5", "flowanime_bosh3", "flowanime_adams_pc",
                                     "flowanime_flow_adams_pc", "flowanime_flow_multistep"])
def test_ksampler_entries_run_through_the_executor(comfyui, family, sampler):
    import comfy.samplers

    assert sampler in comfy.samplers.KSampler.SAMPLERS and sampler in comfy.samplers.SAMPLER_NAMES
    graph, save_id = kit.txt2img(family, sampler, "simple", steps=8, patch={"shift": 3.0})
    latent = comfyui.saved_latent(comfyui.run(graph), save_id)
    assert latent.shape == (2, kit.FAMILIES[family][3], 8, 8)
    assert torch.isfinite(latent).all() and latent.std() > 0


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "heun_euler", "fehlberg2", "adams_pc", "rk4", "euler", "exp_multistep",
                                    "flow_adams_pc", "flow_multistep", "exp_singlestep",
                                    "exp_multistep_staged_end"])
def test_sampler_node_with_sampler_custom_advanced(comfyui, method):
    graph, save_id = kit.txt2img("sd3", scheduler="simple", steps=6, patch={"shift": 3.0},
                                 custom_sampler={**ODE_DEFAULTS, "method": method})
    latent = comfyui.saved_latent(comfyui.run(graph), save_id)
    assert latent.shape == (2, 16, 8, 8) and torch.isfinite(latent).all()


def test_sampler_node_order_reaches_the_solver(comfyui):
    """The node's advanced `order` widget: "default" leaves each method at its own; a saved choice runs."""
    node = comfyui.node_class(kit.SAMPLER_NODE)()
    settings = [ODE_DEFAULTS[k] for k in ("log10_rtol", "log10_atol", "max_model_calls", "sigma_min")]
    for method, order, expected in (("flow_multistep", "default", 2), ("flow_multistep", "3", 3),
                                    ("exp_multistep", "default", 3), ("exp_multistep", "1", 1)):
        sampler = node.get_sampler(method, *settings, "data", order)[0]
        assert sampler.sampler_function.flowanime_config.multistep_order == expected
    with pytest.raises(ValueError, match="'order' must be one of"):
        node.get_sampler("flow_multistep", *settings, "data", "4")
    graph, save_id = kit.txt2img("sd3", scheduler="beta", steps=6, patch={"shift": 3.0},
                                 custom_sampler={**ODE_DEFAULTS, "method": "flow_multistep", "order": "3"})
    latent = comfyui.saved_latent(comfyui.run(graph), save_id)
    assert latent.shape == (2, 16, 8, 8) and torch.isfinite(latent).all()


# --- the same sampling, driven from Python so the model can be observed -----------------------


@pytest.fixture(scope="module")
def sd3(comfyui):
    model = comfyui.node_class("UNETLoader")().load_unet(kit.SD3_MMDIT, "default")[0]
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "sd3")[0]
    encode = comfyui.node_class("CLIPTextEncode")().encode
    latent = {"samples": torch.zeros((2, 16, 8, 8))}
    return model, encode(clip, "1girl")[0], encode(clip, "lowres")[0], latent


def ksample(comfyui, model, positive, negative, latent, sampler="flowanime_dopri5", cfg=4.0, steps=10):
    return comfyui.nodes.common_ksampler(model, 3, steps, cfg, sampler, "simple", positive, negative, latent)[0]["samples"]


def observed(model, on_call):
    """A clone whose every diffusion-model call is reported (input batch, sigma) to on_call."""
    m = model.clone()

    def wrapper(apply_model, args):
        out = on_call(args)
        result = apply_model(args["input"], args["timestep"], **args["c"])
        return result if out is None else out(result)

    m.set_model_unet_function_wrapper(wrapper)
    return m


def test_progress_and_latent_previews_are_reported(comfyui, sd3, monkeypatch):
    import comfy.utils
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod

    model, pos, neg, latent = sd3
    updates = []
    monkeypatch.setattr(latent_preview.args, "preview_method", LatentPreviewMethod.Latent2RGB)
    monkeypatch.setattr(comfy.utils, "PROGRESS_BAR_HOOK",
                        lambda value, total, preview, node_id=None: updates.append((value, total, preview)))
    ksample(comfyui, model, pos, neg, latent, steps=10)
    assert updates, "no progress reported"
    values = [u[0] for u in updates]
    assert values == sorted(values) and values[-1] == 10 and all(u[1] == 10 for u in updates)
    assert all(u[2] is not None for u in updates), "accepted steps must carry a latent preview"


def test_interrupt_is_checked_on_every_model_call(comfyui, sd3):
    import comfy.model_management

    model, pos, neg, latent = sd3
    calls = []

    def on_call(args):
        calls.append(1)
        if len(calls) == 3:  # mid-step: dopri5 makes 6 calls per step
            comfy.model_management.interrupt_current_processing(True)

    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            ksample(comfyui, observed(model, on_call), pos, neg, latent, cfg=1.0)
    finally:
        comfy.model_management.interrupt_current_processing(False)
    assert len(calls) == 3, "the solve ran on after the interrupt"


def test_interrupt_through_the_executor_stops_the_graph(comfyui):
    import comfy.model_management
    import comfy.utils

    def hook(value, total, preview, node_id=None):
        comfy.model_management.interrupt_current_processing(True)

    graph, _ = kit.txt2img("sd3", "flowanime_dopri5", steps=10, patch={"shift": 3.0})
    previous = comfy.utils.PROGRESS_BAR_HOOK
    comfy.utils.set_progress_bar_global_hook(hook)
    try:
        result = comfyui.run(graph, expect_success=False)
    finally:
        comfy.utils.set_progress_bar_global_hook(previous)
        comfy.model_management.interrupt_current_processing(False)
    assert not result.success
    assert any(event == "execution_interrupted" for event, _ in result.messages)


def test_nan_from_the_model_is_a_clear_error_not_a_nan_image(comfyui, sd3):
    model, pos, neg, latent = sd3
    broken = observed(model, lambda args: (lambda out: out * float("nan")))
    with pytest.raises(Exception, match="returned NaN or inf"):
        ksample(comfyui, broken, pos, neg, latent)


def solver_calls(caplog) -> int:
    line = [r.getMessage() for r in caplog.records if r.name == "FlowAnime" and "model calls" in r.getMessage()][-1]
    return int(line.split(":")[1].split("model calls")[0])


def test_cfg_1_costs_one_model_pass_per_call(comfyui, sd3, caplog):
    model, pos, neg, latent = sd3
    for cfg, passes in ((1.0, 1), (4.0, 2)):
        images = []
        with caplog.at_level("INFO", logger="FlowAnime"):
            ksample(comfyui, observed(model, lambda args: images.append(args["input"].shape[0])), pos, neg, latent, cfg=cfg)
        # every solver call evaluates the 2-image batch once per pass: cond only at CFG 1, cond + uncond above
        assert sum(images) == 2 * passes * solver_calls(caplog), cfg


def test_one_log_line_per_solve(comfyui, sd3, caplog):
    model, pos, neg, latent = sd3
    with caplog.at_level("INFO", logger="FlowAnime"):
        ksample(comfyui, model, pos, neg, latent)
    lines = [r.getMessage() for r in caplog.records if r.name == "FlowAnime" and "model calls" in r.getMessage()]
    assert len(lines) == 1 and "accepted" in lines[0] and "rejected" in lines[0] and " s" in lines[0]


def test_partial_pass_ends_on_its_last_sigma_and_denoise_below_one_works(comfyui, sd3):
    model, pos, neg, latent = sd3
    start = {"samples": torch.randn((2, 16, 8, 8), generator=torch.Generator().manual_seed(0)) * 0.5}
    half = comfyui.nodes.common_ksampler(model, 3, 10, 4.0, "flowanime_bosh3", "simple", pos, neg, start, denoise=0.5)[0]["samples"]
    assert torch.isfinite(half).all()
    # KSamplerAdvanced stopping early: the schedule ends above 0, the result is the noisy latent there
    part = comfyui.nodes.common_ksampler(model, 3, 10, 4.0, "flowanime_bosh3", "simple", pos, neg, latent,
                                         start_step=0, last_step=5, force_full_denoise=False)[0]["samples"]
    full = ksample(comfyui, model, pos, neg, latent, "flowanime_bosh3")
    assert torch.isfinite(part).all() and not torch.allclose(part, full, atol=1e-3)


GAUSSIAN_MEAN, GAUSSIAN_STD = 0.3, 0.5  # data in the model's latent space, every value N(mean, std²)


def gaussian_data(model):
    """The model with its network replaced by the exact denoiser of Gaussian data, for a flow (CONST:
    x = (1 - σ) x0 + σ ε) or an eps model (x = x0 + σ ε): ComfyUI's sampling path (noise scaling, latent
    format, partial schedules) stays real, and the sampled image has a closed form. Returns the clone
    and the sigmas it was called at."""
    import comfy.model_sampling

    flow = isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST)
    called = []

    def exact_denoiser(apply_model, args):
        x, sigma = args["input"], args["timestep"].reshape(-1, *[1] * (args["input"].dim() - 1))
        called.append(float(sigma.max()))
        m, s = GAUSSIAN_MEAN, GAUSSIAN_STD
        scale = 1 - sigma if flow else torch.ones_like(sigma)  # of the data in x
        return m + scale * s * s / (scale ** 2 * s * s + sigma ** 2) * (x - scale * m)

    m = model.clone()
    m.set_model_unet_function_wrapper(exact_denoiser)
    return m, called, flow


def gaussian_ode_solution(x, sigma, flow):
    """Where the probability-flow ODE of Gaussian data takes x at sigma, at sigma 0 (the map is affine)."""
    m, s = GAUSSIAN_MEAN, GAUSSIAN_STD
    scale = 1 - sigma if flow else 1.0
    return m + s * (x - scale * m) / math.sqrt(scale ** 2 * s * s + sigma ** 2)


@pytest.fixture(scope="module")
def sd15(comfyui):
    model = comfyui.node_class("UNETLoader")().load_unet(kit.SD15_UNET, "default")[0]
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]
    encode = comfyui.node_class("CLIPTextEncode")().encode
    return model, encode(clip, "1girl")[0], encode(clip, "lowres")[0], {"samples": torch.zeros((2, 4, 8, 8))}


def test_comfyui_euler_converges_to_the_gaussian_closed_form(comfyui, sd3):
    """The closed form checked against ComfyUI's own Euler, independent of our solvers: first order, so
    four times the steps cut the error about fourfold."""
    import comfy.sample

    model, pos, neg, latent = sd3
    exact_model, _, flow = gaussian_data(model)
    fmt = model.model.latent_format
    expected = gaussian_ode_solution(comfy.sample.prepare_noise(latent["samples"], 3), 1.0, flow)
    errors = [float((fmt.process_in(comfyui.nodes.common_ksampler(exact_model, 3, steps, 4.0, "euler", "simple", pos, neg,
                                                                  latent)[0]["samples"]) - expected).pow(2).mean().sqrt())
              for steps in (10, 40)]
    assert 3 < errors[0] / errors[1] < 5, errors


# flow_multistep is made for flows (it warns on an eps model, tested below): SD3 only
@pytest.fixture(scope="module")
def zero_snr_v(comfyui, sd15):
    """The SD1.5 stand-in as ModelSamplingDiscrete makes a zero-terminal-SNR v-prediction model (RouWei and
    NoobAI v-pred: the RouWei workflow's setting): its schedule starts near sigma 4500."""
    model, pos, neg, latent = sd15
    return comfyui.node_class("ModelSamplingDiscrete")().patch(model, "v_prediction", True)[0], pos, neg, latent


@pytest.mark.parametrize("sampler", ["flowanime_adams_pc", "flowanime_dopri5", "flowanime_bosh3", "flowanime_flow_adams_pc"])
def test_adaptive_entries_on_a_zero_terminal_snr_model_land_on_the_exact_image(comfyui, zero_snr_v, sampler):
    """Above sigma 1 an eps or v model's latent is mostly noise: its error is measured divided by sigma
    (ode.size_at). Measured against |x| as it is, adams_pc took 6 calls and one step from sigma 33 to
    the floor, 0.42 from the image (dopri5 1.1e-2): more than an 8-bit image shows (5.5e-3 on SD1.5)."""
    import comfy.sample

    model, pos, neg, latent = zero_snr_v
    exact_model, called, _ = gaussian_data(model)
    sigma_max = float(model.get_model_object("model_sampling").sigma_max)
    assert sigma_max > 4000
    noise = comfy.sample.prepare_noise(latent["samples"], 3)
    expected = gaussian_ode_solution(noise * math.sqrt(1 + sigma_max ** 2), sigma_max, False)
    out = comfyui.nodes.common_ksampler(exact_model, 3, 20, 4.0, sampler, "simple", pos, neg, latent)[0]["samples"]
    error = float((model.model.latent_format.process_in(out) - expected).pow(2).mean().sqrt())
    assert error < 5.5e-3, (error, len(called))
    assert 10 <= len(called) <= 80


def test_a_schedule_calibrated_on_a_zero_terminal_snr_model_lands_on_the_exact_image(comfyui, zero_snr_v):
    """The Calibrated Schedule's teacher (adams_pc) is the solve above: before the error was sized at its
    sigma, its 6 calls made a schedule 0.46 from the image (ComfyUI's beta schedule: 2.1e-2)."""
    import comfy.sample

    model, pos, neg, latent = zero_snr_v
    exact_model, _, _ = gaussian_data(model)
    sigma_max = float(model.get_model_object("model_sampling").sigma_max)
    noise = comfy.sample.prepare_noise(latent["samples"], 3)
    expected = gaussian_ode_solution(noise * math.sqrt(1 + sigma_max ** 2), sigma_max, False)
    sigmas = comfyui.node_class("FlowAnimeCalibratedSchedule")().calibrate(
        exact_model, pos, neg, 4.0, latent, 12, 3, 1, 0, use_cache=False)["result"][0]
    sampler = comfyui.node_class("FlowAnimeSamplerRungeKuttaODE")().get_sampler("exp_multistep", -2.5, -3.5, 300, 0.001)[0]
    out = comfy.sample.sample_custom(exact_model, noise, 4.0, sampler, sigmas, pos, neg, latent["samples"], disable_pbar=True)
    assert float((model.model.latent_format.process_in(out) - expected).pow(2).mean().sqrt()) < 5.5e-3


@pytest.mark.parametrize("sampler, family, visible", [
    *((s, f, v) for s in ("flowanime_dopri5", "flowanime_bosh3", "flowanime_adams_pc", "flowanime_flow_adams_pc")
      for f, v in (("sd3", 1.3e-2), ("sd15", 5.5e-3))),
    ("flowanime_flow_multistep", "sd3", 1.3e-2),
])
def test_full_split_and_partial_denoise_land_on_the_exact_image(comfyui, request, sampler, family, visible):
    """On Gaussian data the image each schedule leads to is known: one pass, the same schedule split in two
    (KSamplerAdvanced to step 5 or 9 with its leftover noise, then on from there without new noise, as a
    two-pass workflow does) and denoise 0.5 from a given latent (img2img, hires fix) all land on it, within
    what an 8-bit image shows (a latent RMS error of 1.3e-2 on SD3, 5.5e-3 on SD1.5; README). SD3 as a
    flow, SD1.5 as loaded: an eps model, whose solve ends at its smallest trained sigma."""
    import comfy.sample

    model, pos, neg, latent = request.getfixturevalue(family)
    exact_model, called, flow = gaussian_data(model)
    fmt = model.model.latent_format
    ks = comfyui.nodes.common_ksampler
    noise = comfy.sample.prepare_noise(latent["samples"], 3)
    sigma_max = float(model.get_model_object("model_sampling").sigma_max)

    def error(samples, expected_model_space):
        return float((fmt.process_in(samples) - expected_model_space).pow(2).mean().sqrt())

    # the first noise: σ ε for a flow at σ 1; an eps model's full denoise scales it by sqrt(1 + σ²)
    start_x = noise if flow else noise * math.sqrt(1 + sigma_max ** 2)
    expected = gaussian_ode_solution(start_x, sigma_max, flow)
    full = ks(exact_model, 3, 10, 4.0, sampler, "simple", pos, neg, latent)[0]["samples"]

    def split_at(step):
        first = ks(exact_model, 3, 10, 4.0, sampler, "simple", pos, neg, latent, start_step=0, last_step=step,
                   force_full_denoise=False)[0]
        return ks(exact_model, 3, 10, 4.0, sampler, "simple", pos, neg, first, disable_noise=True, start_step=step,
                  last_step=10)[0]["samples"]
    start = {"samples": fmt.process_out(torch.full_like(noise, -0.4))}  # an image, as a VAE would encode it
    called.clear()
    half = ks(exact_model, 3, 10, 4.0, sampler, "simple", pos, neg, start, denoise=0.5)[0]["samples"]
    sigma0 = max(called)
    noisy = sigma0 * noise + (1 - sigma0 if flow else 1.0) * -0.4
    # split at 9: the second pass is one step to 0 (flow_multistep's one-step schedule: a review helper
    # found 9.5e-2 there before it took a midpoint call)
    errors = {"full": error(full, expected), "split at 5": error(split_at(5), expected),
              "split at 9": error(split_at(9), expected),
              "denoise 0.5": error(half, gaussian_ode_solution(noisy, sigma0, flow))}
    assert max(errors.values()) < visible, errors


@pytest.mark.parametrize("sampler, patch, warns", [
    ("flowanime_flow_multistep", None, True),  # SD1.5 as loaded: eps
    ("flowanime_flow_multistep", {"shift": 3.0}, False),  # made a flow by our patch
    ("flowanime_adams_pc", None, False),
])
def test_flow_multistep_on_an_eps_model_says_what_fits_better(comfyui, caplog, sampler, patch, warns):
    graph, _ = kit.txt2img("sd15", sampler, "simple", steps=4, patch=patch)
    with caplog.at_level("WARNING", logger="FlowAnime"):
        comfyui.run(graph)
    warned = [r.getMessage() for r in caplog.records if r.name == "FlowAnime" and "made for rectified-flow" in r.getMessage()]
    assert bool(warned) == warns and all("exp_multistep" in w for w in warned)


@pytest.mark.parametrize("sampler, dtype, told", [
    ("flowanime_adams_pc", torch.bfloat16, True),
    ("flowanime_flow_adams_pc", torch.float16, True),
    ("flowanime_dopri5", torch.bfloat16, False),  # a Runge-Kutta pair's estimate is not thrown off
    ("flowanime_adams_pc", torch.float32, False),
])
def test_the_adams_entries_learn_a_half_precision_models_dtype(comfyui, sd3, caplog, sampler, dtype, told):
    """The SD3 stand-in really run in half precision (its weights converted, as ComfyUI builds a model
    for such a device; ComfyUI casts the input to that dtype): the one-call adaptive methods get the
    model's precision from the adapter and say so in the console, and the image is finished."""
    model, pos, neg, latent = sd3
    converted = model.clone()
    converted.model = copy.deepcopy(model.model)
    converted.model.diffusion_model.to(dtype)
    converted.model.diffusion_model.dtype = dtype  # what get_dtype() reads, set when ComfyUI builds the model
    with caplog.at_level("INFO", logger="FlowAnime"):
        out = ksample(comfyui, converted, pos, neg, latent, sampler, steps=4)
    said = [r.getMessage() for r in caplog.records if r.name == "FlowAnime" and "allows for its rounding" in r.getMessage()]
    assert bool(said) == told and all(str(dtype).replace("torch.", "") in m for m in said)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("sampler, family, visible, precision", [
    *((s, f, v, None) for s in ("flowanime_dopri5", "flowanime_adams_pc", "flowanime_flow_adams_pc")
      for f, v in (("sd3", 1.3e-2), ("sd15", 5.5e-3))),
    ("flowanime_bosh3", "sd3", 1.3e-2, None),
    ("flowanime_flow_multistep", "sd3", 1.3e-2, None),
    # As on a GPU, where ComfyUI loads these models in float16 (seen on an H100): the Adams entries'
    # controller allows for that rounding and must still finish the masked part.
    ("flowanime_adams_pc", "sd15", 5.5e-3, "float16"),
    ("flowanime_flow_adams_pc", "sd15", 5.5e-3, "float16"),
    ("flowanime_adams_pc", "sd3", 1.3e-2, "float16"),
])
def test_inpainting_keeps_the_unmasked_latent_and_finishes_the_masked_part(comfyui, request, monkeypatch, sampler,
                                                                           family, visible, precision):
    """A latent with a noise mask (SetLatentNoiseMask, VAEEncodeForInpaint): ComfyUI re-noises the kept
    part at every model call and replaces its denoised prediction by the given latent. On Gaussian data,
    whose denoiser acts on each value alone, the masked part still lands on the closed-form image and
    the kept part on the given latent. A feathered (soft) mask makes the solution non-smooth at sigma 0
    (like sigma ** (1 - m²) where the mask is m: every sampler converges slowly there, ComfyUI's Euler at
    1600 steps still 2 % from its value at 400), so there only its two ends are held: where it is 0 the
    latent is kept, where it is 1 the closed form is reached. The same with Differential Diffusion, which
    opens each mask value at its own sigma, in a bounded number of calls."""
    import comfy.sample

    if precision is not None:
        monkeypatch.setattr(comfyui.pack_submodule("comfy_adapter.samplers"), "model_precision", lambda m: precision)
    model, pos, neg, latent = request.getfixturevalue(family)
    exact_model, called, flow = gaussian_data(model)
    fmt = model.model.latent_format
    ms = model.get_model_object("model_sampling")
    ks = comfyui.nodes.common_ksampler
    given = fmt.process_out(torch.full_like(latent["samples"], -0.4))  # an image, as a VAE would encode it
    noise = comfy.sample.prepare_noise(given, 3)
    sigma_max = float(ms.sigma_max)
    start_x = ms.noise_scaling(torch.tensor(sigma_max), noise, fmt.process_in(given), True)
    expected = gaussian_ode_solution(start_x, sigma_max, flow)

    hard = torch.zeros((1, 8, 8))
    hard[:, :, :4] = 1.0  # repaint the left half
    feathered = torch.linspace(1.0, 0.0, 8).expand(1, 8, 8).clone()  # from 1 at the left edge to 0 at the right
    differential = comfyui.node_class("DifferentialDiffusion")
    opening_model = (differential.execute(exact_model) if hasattr(differential, "execute")
                     else differential().apply(exact_model))[0]
    for sampled, mask in ((exact_model, hard), (exact_model, feathered), (opening_model, feathered)):
        called.clear()
        out = ks(sampled, 3, 10, 4.0, sampler, "simple", pos, neg, {"samples": given, "noise_mask": mask})[0]["samples"]
        repaint, keep = mask[0, 0] == 1, mask[0, 0] == 0
        repainted = float((fmt.process_in(out) - expected)[..., repaint].pow(2).mean().sqrt())
        kept = float((out - given)[..., keep].abs().max())
        assert torch.isfinite(out).all() and repainted < visible, repainted
        if sampled is exact_model:
            assert kept < 1e-4, kept
        else:
            # Differential Diffusion opens each mask value at its own sigma (the 0s only at the model's
            # sigma_min, where an adaptive solve ends: README, "Inpainting"). Told where, the error control
            # does not shrink the steps on every switch (15 to 55 calls here; told nothing, the Adams
            # entries and bosh3 spend 96 to 202).
            assert len(called) <= 70, len(called)


def scheduled_prompt(comfyui, positive, negative, percent):
    """positive until `percent` of the schedule, negative from there (ConditioningSetTimestepRange)."""
    set_range, combine = comfyui.node_class("ConditioningSetTimestepRange"), comfyui.node_class("ConditioningCombine")

    def ranged(c, start, end):
        return (set_range.execute(c, start, end) if hasattr(set_range, "execute") else set_range().set_range(c, start, end))[0]

    first, then = ranged(negative, 0.0, percent), ranged(positive, percent, 1.0)
    return (combine.execute(first, then) if hasattr(combine, "execute") else combine().combine(first, then))[0]


@pytest.mark.parametrize("sampler, family, visible", [
    ("flowanime_adams_pc", "sd3", 1.3e-2), ("flowanime_adams_pc", "sd15", 5.5e-3),
    ("flowanime_dopri5", "sd3", 1.3e-2), ("flowanime_bosh3", "sd3", 1.3e-2), ("flowanime_flow_adams_pc", "sd3", 1.3e-2),
])
def test_a_prompt_that_changes_at_a_sigma_ends_one_solve_and_starts_the_next(comfyui, request, sampler, family, visible):
    """A prompt scheduled to change at 40 % of the schedule (ConditioningSetTimestepRange; ControlNet start
    and end percents work the same way) changes the model's output there for the whole image. The
    adaptive entries end a solve just above that sigma and start the next just below it, and land within
    what an 8-bit image shows of ComfyUI's Euler at 2000 steps. The denoiser is Gaussian data whose
    mean follows the prompt."""
    import comfy.model_sampling

    model, pos, neg, latent = request.getfixturevalue(family)
    flow = isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST)
    called = []

    def prompt_dependent(apply_model, args):
        x, sigma = args["input"], args["timestep"].reshape(-1, 1, 1, 1)
        called.append(float(sigma.max()))
        mean = 0.3 + 0.5 * torch.tanh(args["c"]["c_crossattn"].to(x).flatten(1).mean(1) * 50).reshape(-1, 1, 1, 1)
        scale = 1 - sigma if flow else torch.ones_like(sigma)
        s = GAUSSIAN_STD
        return mean + scale * s * s / (scale ** 2 * s * s + sigma ** 2) * (x - scale * mean)

    m = model.clone()
    m.set_model_unet_function_wrapper(prompt_dependent)
    scheduled = scheduled_prompt(comfyui, pos, neg, 0.4)
    switch = float(model.get_model_object("model_sampling").percent_to_sigma(0.4))
    fmt = model.model.latent_format
    ks = comfyui.nodes.common_ksampler  # CFG 1: the model sees the scheduled prompt alone
    reference = fmt.process_in(ks(m, 3, 2000, 1.0, "euler", "simple", scheduled, neg, latent)[0]["samples"])
    called.clear()
    out = fmt.process_in(ks(m, 3, 10, 1.0, sampler, "simple", scheduled, neg, latent)[0]["samples"])
    assert any(switch < s <= switch * (1 + 1e-4) for s in called) and any(switch * (1 - 1e-4) <= s < switch for s in called)
    assert float((out - reference).pow(2).mean().sqrt()) < visible


def lora_scheduled_by_keyframes(model, cond, frames):
    """`model` with a LoRA hook (comfy.hooks.load_hook_lora_for_models, what CreateHookLora's hooks
    become) adding 0.02 to one weight, its strength following `frames` ((strength, start percent), as
    CreateHookKeyframe and SetHookKeyframes make), and `cond` carrying the hook; with the weight's key."""
    import comfy.hooks

    weights = model.model.state_dict()
    key = next(k for k in weights if k.startswith("diffusion_model.") and k.endswith(".weight") and weights[k].ndim == 2)
    lora = {key[:-len(".weight")] + ".diff": torch.full_like(weights[key], 0.02)}
    hooked, _, group = comfy.hooks.load_hook_lora_for_models(model, None, lora, 1.0, 0.0)
    keyframes = comfy.hooks.HookKeyframeGroup()
    for strength, start in frames:
        keyframes.add(comfy.hooks.HookKeyframe(strength, start))
    group.set_keyframes_on_hooks(keyframes)
    return hooked, comfy.hooks.set_hooks_for_conditioning(cond, group), key


@pytest.mark.parametrize("sampler, family, visible", [
    ("flowanime_adams_pc", "sd3", 1.3e-2), ("flowanime_adams_pc", "sd15", 5.5e-3),
    ("flowanime_dopri5", "sd3", 1.3e-2), ("flowanime_bosh3", "sd3", 1.3e-2), ("flowanime_flow_adams_pc", "sd15", 5.5e-3),
])
def test_a_lora_hook_keyframe_ends_one_solve_and_starts_the_next(comfyui, request, sampler, family, visible):
    """A LoRA hook on for the first half of the schedule and off for the rest (hook keyframes, as
    prompt-control's LoRA scheduling makes) changes the model's weights at one sigma. ComfyUI moves to a
    keyframe at the first call at or below its sigma and never back, so a step rejected past it would
    leave the LoRA off on the retry. The adaptive entries end a solve just above that sigma and start the
    next just below it, and land within what an 8-bit image shows of ComfyUI's Euler at 2000 steps. The
    denoiser is Gaussian data whose mean follows the patched weight."""
    import comfy.model_sampling

    model, pos, neg, latent = request.getfixturevalue(family)
    flow = isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST)
    hooked, cond, key = lora_scheduled_by_keyframes(model, pos, [(1.0, 0.0), (0.0, 0.5)])
    unpatched = float(model.model.state_dict()[key].float().mean())
    called = []

    def weight_dependent(apply_model, args):
        x, sigma = args["input"], args["timestep"].reshape(-1, 1, 1, 1)
        called.append(float(sigma.max()))
        mean = 0.3 + 20 * (float(apply_model.__self__.state_dict()[key].float().mean()) - unpatched)
        scale = 1 - sigma if flow else torch.ones_like(sigma)
        s = GAUSSIAN_STD
        return mean + scale * s * s / (scale ** 2 * s * s + sigma ** 2) * (x - scale * mean)

    m = hooked.clone()
    m.set_model_unet_function_wrapper(weight_dependent)
    switch = float(model.get_model_object("model_sampling").percent_to_sigma(0.5))
    fmt = model.model.latent_format
    ks = comfyui.nodes.common_ksampler  # CFG 1: the model sees the hooked prompt alone
    reference = fmt.process_in(ks(m, 3, 2000, 1.0, "euler", "simple", cond, neg, latent)[0]["samples"])
    assert float(reference.mean()) > 0.32  # the LoRA's half of the schedule shows in the image
    called.clear()
    out = fmt.process_in(ks(m, 3, 10, 1.0, sampler, "simple", cond, neg, latent)[0]["samples"])
    assert any(switch < s <= switch * (1 + 1e-4) for s in called) and any(switch * (1 - 1e-4) <= s < switch for s in called)
    assert float((out - reference).pow(2).mean().sqrt()) < visible


def test_hook_keyframes_that_switch_the_model_are_breakpoints(comfyui):
    """A keyframe that changes a hook's strength by a large share of its range is a breakpoint; one that
    keeps it, one step of a fade, one after a keyframe held for several calls (guarantee_steps), one at
    the same sigma that ends where it started, and a hook for CLIP alone are not; past
    MAX_HOOK_BREAKPOINTS the largest changes are kept, equal ones spread over the schedule; a hook
    object that raises is left out."""
    from types import SimpleNamespace

    adapter = comfyui.pack_submodule("comfy_adapter.samplers")
    margin = comfyui.pack_submodule("samplers.k_sampler").BREAKPOINT_MARGIN

    def hook(*frames, guarantee=1, **attributes):
        keyframes = [SimpleNamespace(strength=s, start_percent=p, start_t=1 - p, guarantee_steps=guarantee) for s, p in frames]
        return SimpleNamespace(hook_keyframe=SimpleNamespace(keyframes=keyframes), **attributes)

    def breakpoints(*hooks):
        guider = SimpleNamespace(conds={"positive": [{"hooks": SimpleNamespace(hooks=list(hooks))}], "negative": [{}]})
        return adapter.conditioning_breakpoints(SimpleNamespace(inner_model=guider), 1.0, 0.0)

    assert breakpoints(hook((1.0, 0.0), (1.0, 0.3), (0.0, 0.6))) == pytest.approx([0.4])
    assert breakpoints(hook(*((1 - i / 99, i / 99) for i in range(100)))) == []  # a fade
    assert breakpoints(hook((1.0, 0.0), (0.0, 0.3), (1.0, 0.6), guarantee=3)) == []
    assert breakpoints(hook((1.0, 0.0), (0.0, 0.5), (1.0, 0.5))) == []
    assert breakpoints(hook((1.0, 0.0), (0.0, 0.5), _strength_model=0.0)) == []
    toggling = hook(*((float(i % 2 == 0), i / 40) for i in range(40)))
    kept = breakpoints(toggling)
    assert len(kept) == adapter.MAX_HOOK_BREAKPOINTS and 0 < kept[0] and kept[-1] < 1 / (1 + margin)  # inside the solve
    assert min(b - a for a, b in zip(kept, kept[1:])) > 0.5 / adapter.MAX_HOOK_BREAKPOINTS

    class Hostile:
        @property
        def keyframes(self):
            raise RuntimeError("another pack's object")

    odd = [SimpleNamespace(hook_keyframe=Hostile()), SimpleNamespace(hook_keyframe=SimpleNamespace(keyframes=3)),
           hook((10 ** 400, 0.0), (0.0, 0.5)), hook((1.0, 0.0), (float("inf"), 0.5))]
    assert breakpoints(*odd, hook((1.0, 0.0), (0.0, 0.25))) == pytest.approx([0.75])
    guider = SimpleNamespace(conds={"positive": [{"hooks": SimpleNamespace(hooks=7)}]})
    assert adapter.conditioning_breakpoints(SimpleNamespace(inner_model=guider), 1.0, 0.0) == []


def range_patched(comfyui, model, patch: str):
    """`model` through ComfyUI's SkipLayerGuidanceSD3 (layers 7-9 skipped, scale 3) or
    PatchModelAddDownscale (Deep Shrink on input block 3, factor 2), limited to part of the schedule;
    with the percents where the patch turns on and off."""
    if patch.startswith("slg"):
        percents = (0.01, 0.15) if patch == "slg" else (0.3, 0.6)
        node, args = comfyui.node_class("SkipLayerGuidanceSD3"), (model, "7, 8, 9", 3.0, *percents)
        legacy = "skip_guidance_sd3"
    else:
        percents = (0.0, 0.35)
        node, args = comfyui.node_class("PatchModelAddDownscale"), (model, 3, 2.0, *percents, True, "bicubic", "bicubic")
        legacy = "patch"
    run = node.execute if hasattr(node, "define_schema") else getattr(node(), legacy)
    return run(*args)[0], percents


@pytest.mark.parametrize("sampler, family, patch, visible", [
    ("flowanime_dopri5", "sd15", "shrink", 5.5e-3), ("flowanime_flow_adams_pc", "sd15", "shrink", 5.5e-3),
    ("flowanime_adams_pc", "sd3", "slg", 1.3e-2),
    ("flowanime_dopri5", "sd3", "slg_late", 1.3e-2), ("flowanime_bosh3", "sd3", "slg_late", 1.3e-2),
])
def test_a_patch_limited_to_part_of_the_schedule_ends_one_solve_and_starts_the_next(comfyui, request, sampler, family,
                                                                                     patch, visible):
    """Skip Layer Guidance (recommended for SD3.5) and Deep Shrink (SDXL at high resolution) change the
    model's output between two percents of the schedule. The adaptive entries end a solve just above
    each sigma inside the solve and start the next just below it, and land within what an 8-bit image
    shows of ComfyUI's Euler at 2000 steps. The Gaussian denoiser's mean changes while layers are
    skipped (the SLG pass) or the input block is shrunk."""
    import comfy.model_sampling

    model, pos, neg, latent = request.getfixturevalue(family)
    model_sampling = model.get_model_object("model_sampling")
    flow = isinstance(model_sampling, comfy.model_sampling.CONST)
    patched, percents = range_patched(comfyui, model, patch)
    called = []

    def patch_dependent(apply_model, args):
        x, sigma = args["input"], args["timestep"].reshape(-1, 1, 1, 1)
        called.append(float(sigma.max()))
        options = args["c"].get("transformer_options", {})
        mean = 0.5 if "dit" in (options.get("patches_replace") or {}) else 0.3
        for block_patch in (options.get("patches") or {}).get("input_block_patch_after_skip", []):
            h = torch.zeros(1, 1, 8, 8)
            if block_patch(h, {"block": ("input", 3), "sigmas": args["timestep"]}).shape != h.shape:
                mean = 0.5
        scale = 1 - sigma if flow else torch.ones_like(sigma)
        s = GAUSSIAN_STD
        return mean + scale * s * s / (scale ** 2 * s * s + sigma ** 2) * (x - scale * mean)

    m = patched.clone()
    m.set_model_unet_function_wrapper(patch_dependent)
    fmt = model.model.latent_format
    ks = comfyui.nodes.common_ksampler
    reference = fmt.process_in(ks(m, 3, 2000, 1.0, "euler", "simple", pos, neg, latent)[0]["samples"])
    called.clear()
    out = fmt.process_in(ks(m, 3, 10, 1.0, sampler, "simple", pos, neg, latent)[0]["samples"])
    highest = float(model_sampling.sigma_max)
    for switch in (float(model_sampling.percent_to_sigma(p)) for p in percents):
        if switch < highest / 1.01:
            assert any(switch < s <= switch * (1 + 1e-4) for s in called) and any(switch * (1 - 1e-4) <= s < switch for s in called)
    assert float((out - reference).pow(2).mean().sqrt()) < visible


def test_patch_ranges_are_read_from_the_functions_model_options_holds(comfyui):
    """Functions closing over sigma_start / sigma_end and patch objects holding sigma_starts / sigma_ends,
    anywhere in model_options (lists, dicts, partials, bound methods); the walk is bounded and an
    unfilled cell, a property or a non-number is passed over."""
    import functools
    from types import SimpleNamespace

    adapter = comfyui.pack_submodule("comfy_adapter.samplers")

    def ranged(sigma_start, sigma_end):
        def patch(h, transformer_options):
            return h if sigma_end <= transformer_options["sigmas"][0] <= sigma_start else -h
        return patch

    class Holder:
        def __init__(self):
            sigma_start, sigma_end = 0.7, "not a sigma"
            self.call = lambda: (sigma_start, sigma_end)

    def unfilled():
        def inner():
            return sigma_start  # noqa: F821 - a cell filled only after inner exists
        found = list(adapter._closure_values(inner, adapter.RANGE_CLOSURE_NAMES))
        sigma_start = 1.0
        return found

    class Odd:  # a callable whose attributes raise when read or tested
        func = torch.ones(3)

        def __call__(self):
            return None

    class AttentionPatch:  # IPAdapter plus's CrossAttentionPatch: one entry per adapter applied
        def __init__(self):
            self.sigma_starts, self.sigma_ends = [0.95, 999999999.9], [0.6, 0.0]

        @property
        def sigma_start(self):
            raise AssertionError("a property is not run")

        def __call__(self, q, k, v, extra_options):
            return q

    options = {"sampler_post_cfg_function": [ranged(0.9, torch.tensor(0.4)), Odd()],
               "transformer_options": {"patches": {"input_block_patch": [functools.partial(ranged(0.8, 0.3))]},
                                       "patches_replace": {"attn2": {("input", 4, 0): AttentionPatch()}}},
               "model_function_wrapper": Holder().call}
    guider = SimpleNamespace(conds={}, model_options=options)
    found = adapter.conditioning_breakpoints(SimpleNamespace(inner_model=guider), 1.0, 0.0)
    assert found == pytest.approx([0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95])
    assert unfilled() == []
    crowded = {"sampler_post_cfg_function": [ranged(0.5, 0.1)] * (adapter.MAX_OPTIONS_READ * 4)}
    assert adapter.patch_range_breakpoints(crowded)  # read until the bound, then stopped
    looped = {"patches": [ranged(0.5, 0.1)] + list(range(100_000))}
    looped["again"] = looped  # a container holding itself is walked once, and only to the bound
    assert sorted(adapter.patch_range_breakpoints(looped)) == [0.1, 0.5]

    class Gone:  # a lazy proxy whose target is gone: even its class cannot be read
        @property
        def __class__(self):
            raise RuntimeError("gone")

    meta = ranged(torch.empty((), device="meta"), 0.2)
    guider = SimpleNamespace(conds={}, model_options={"a": [Gone(), meta, ranged(0.9, 0.3)]})
    assert adapter.conditioning_breakpoints(SimpleNamespace(inner_model=guider), 1.0, 0.0) == pytest.approx([0.2, 0.3, 0.9])
    many = {"patches": [ranged(0.9 - i / 100, 0.05) for i in range(40)]}
    guider = SimpleNamespace(conds={}, model_options=many)
    assert len(adapter.conditioning_breakpoints(SimpleNamespace(inner_model=guider), 1.0, 0.0)) == adapter.MAX_PATCH_BREAKPOINTS


def test_breakpoints_are_read_from_conditioning_and_chained_controlnets(comfyui):
    """The guider's processed conds carry timestep_start/timestep_end (sigmas); each ControlNet, and the
    ones chained before it, a timestep_range (comfy/samplers.py@311c014, comfy/controlnet.py@03b1ca6)."""
    from types import SimpleNamespace

    adapter = comfyui.pack_submodule("comfy_adapter.samplers")
    earlier = SimpleNamespace(timestep_range=(1.0, 0.5), previous_controlnet=None)
    control = SimpleNamespace(timestep_range=(0.9, 0.1), previous_controlnet=earlier)
    guider = SimpleNamespace(conds={"positive": [{"timestep_start": 0.8, "control": control}],
                                    "negative": [{"timestep_end": torch.tensor(0.2)}, {}]})
    assert adapter.conditioning_breakpoints(SimpleNamespace(inner_model=guider)) == pytest.approx([0.1, 0.2, 0.5, 0.8, 0.9, 1.0])
    assert adapter.conditioning_breakpoints(SimpleNamespace()) == []


@pytest.mark.parametrize("method, calls_simple, calls_karras", [("exp_singlestep", 3 * 10, 3 * 9 + 1),
                                                                 ("exp_multistep_staged_end", 10 + 2, 10)])
def test_the_staged_end_stops_at_an_eps_models_smallest_sigma(comfyui, sd15, method, calls_simple, calls_karras):
    """exp_singlestep and exp_multistep_staged_end through ComfyUI's custom sampling on SD1.5 (an eps
    model): the interval to 0 runs down to the model's smallest trained sigma (larger than sigma_min),
    with its stages at 1/3 and 2/3 of that step in log sigma, and on Gaussian data the image lands on
    the closed form within what 8 bits show. A schedule that already ends on that sigma (karras; it
    arrives rounded to float32) spends no stage calls on the rounding."""
    import comfy.sample
    import comfy.samplers

    model, pos, neg, latent = sd15
    sampler = comfyui.node_class("FlowAnimeSamplerRungeKuttaODE")().get_sampler(
        **{**ODE_DEFAULTS, "method": method})[0]
    model_sampling = model.get_model_object("model_sampling")
    floor, sigma_max = float(model_sampling.sigma_min), float(model_sampling.sigma_max)
    noise = comfy.sample.prepare_noise(latent["samples"], 3)
    for scheduler, calls in (("simple", calls_simple), ("karras", calls_karras)):
        exact_model, called, flow = gaussian_data(model)
        assert not flow
        sigmas = comfy.samplers.calculate_sigmas(model_sampling, scheduler, 10).cpu()
        out = comfy.sample.sample_custom(exact_model, noise, 1.0, sampler, sigmas, pos, neg, latent["samples"])
        last = float(sigmas[-2])
        if scheduler == "simple":
            h = math.log(last / floor)
            assert h > 1 and min(called) == pytest.approx(last * math.exp(-2 * h / 3), rel=1e-4)
            assert min(called) > floor
        else:
            assert last == pytest.approx(floor, rel=1e-6) and min(called) == pytest.approx(last, rel=1e-6)
        assert len(called) == calls, scheduler
        expected = gaussian_ode_solution(noise * math.sqrt(1 + sigma_max ** 2), sigma_max, flow)
        error = float((model.model.latent_format.process_in(out) - expected).pow(2).mean().sqrt())
        assert error < 5.5e-3, (scheduler, error)


def test_the_samplers_advice_names_only_settings_comfyui_has(comfyui):
    """A message that sends the user to a setting must name one that exists where the message says.
    The model-fault advice named fp16 -> bf16/fp32 for a loader's weight_dtype, which no ComfyUI loader
    offers; the tolerance and budget advice named the ODE Sampler node's widgets without naming the
    node, also when a KSampler entry (which has none of them) raised it."""
    import re

    import comfy.cli_args

    from flowanime.samplers.inputs import SamplerInputError, check_sigmas
    from flowanime.samplers.ode import budget_spent_message, model_output_not_finite, step_collapsed

    with pytest.raises(SamplerInputError) as direction:
        check_sigmas([1.0, 0.5, 0.8, 0.0], adaptive=True)
    messages = [str(model_output_not_finite("dopri5", 0.5, "images 0, 1")), str(step_collapsed("dopri5", 0.5, 40)),
                budget_spent_message("dopri5", 300, 0.5), str(direction.value)]
    node_names = {comfyui.nodes.NODE_DISPLAY_NAME_MAPPINGS.get(k, k).removesuffix(" (FlowAnime)"): k
                  for k in comfyui.nodes.NODE_CLASS_MAPPINGS}
    flags = set(comfy.cli_args.parser._option_string_actions)
    for message in messages:
        named_nodes = [node_names[name] for name in node_names if re.search(rf"\b{re.escape(name)} node\b", message)]
        widgets = {name for node in named_nodes for section in comfyui.node_class(node).INPUT_TYPES().values()
                   for name in section}
        for setting in re.findall(r"'([a-z][a-z0-9_]*)'", message):
            assert setting in widgets, f"{setting!r} is not a widget of the node the message names ({named_nodes}): {message}"
        for flag in re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", message):
            assert flag in flags, f"ComfyUI has no command-line option {flag}: {message}"
        assert "weight_dtype" not in message or "fp16 ->" not in message, message
    assert "ModelComputeDtype node" in messages[0], "the model-fault advice names how to change the compute dtype"
    assert "ModelComputeDtype" in comfyui.nodes.NODE_CLASS_MAPPINGS


@pytest.mark.parametrize("method", ["exp_singlestep", "exp_multistep_staged_end", "heun_euler", "dopri5",
                                    "flow_multistep"])
def test_sampler_custom_advanced_denoised_output_is_the_image_on_a_schedule_to_zero(comfyui, sd3, method):
    """SamplerCustomAdvanced's denoised_output is the last preview's x0 (latent_preview.prepare_callback);
    at sigma 0 the latent is its own prediction, so both outputs are the image. exp_singlestep's last
    preview was its last stage's prediction, and a non-FSAL pair's (heun_euler) was reported before its
    call at the end."""
    model, positive, negative, latent = sd3
    model = comfyui.node_class(kit.PATCH)().patch(model, **{**kit.PATCH_DEFAULTS, "shift": 3.0})[0]
    guider = comfyui.node_class("CFGGuider")().get_guider(model, positive, negative, 4.0)[0]
    noise = comfyui.node_class("RandomNoise")().get_noise(7)[0]
    sigmas = comfyui.node_class("BasicScheduler")().get_sigmas(model, "simple", 6, 1.0)[0]
    sampler = comfyui.node_class(kit.SAMPLER_NODE)().get_sampler(**{**ODE_DEFAULTS, "method": method})[0]
    output, denoised_output = comfyui.node_class("SamplerCustomAdvanced")().sample(noise, guider, sampler, sigmas, latent)
    assert torch.isfinite(output["samples"]).all()
    assert torch.allclose(denoised_output["samples"], output["samples"], rtol=0, atol=1e-6)
