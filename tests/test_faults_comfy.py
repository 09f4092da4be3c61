"""Fault suite inside the real ComfyUI (issue 12): bad latents, prompts, schedules, widget values and
faulty models, through ComfyUI's validator and executor where a graph can express the fault, and
through its node and sampling functions where only Python can (NaN sigmas, injected model faults).

Each case ends in a finite result or in an error that names the input to change.
"""

import time

import flowanime_testkit as kit
import pytest
import torch

pytestmark = pytest.mark.faults

NORMALIZER, ENCODER = "FlowAnimeBooruPromptNormalizer", "FlowAnimeCLIPTextEncodeBreak"
# Loose, with a small budget: the tiny random-weight model is rough, and each call costs CPU time.
ODE = dict(method="dopri5", log10_rtol=-1.5, log10_atol=-2.5, max_model_calls=40, sigma_min=0.001)


def graph_error(result) -> str:
    assert not result.success, "the graph ran, where an error naming the input was expected"
    error = result.error
    assert error is not None, result.messages
    return error["exception_message"]


def assert_finite_latent(comfyui, result, save_id):
    latent = comfyui.saved_latent(result, save_id)
    assert torch.isfinite(latent).all(), "silent non-finite output"
    return latent


def sampling_graph(g, latent, text="1girl, solo", negative="lowres", sampler="flowanime_bosh3", encoder="CLIPTextEncode",
                   steps=4, patch=None):
    model = g.node("UNETLoader", unet_name=kit.SD3_MMDIT, weight_dtype="default").out(0)
    if patch is not None:
        model = g.node(kit.PATCH, model=model, **{**kit.PATCH_DEFAULTS, **patch}).out(0)
    clip = g.node("CLIPLoader", clip_name=kit.CLIP_L, type="sd3").out(0)
    extra = {"comma_backtrack": 20} if encoder == ENCODER else {}
    positive = g.node(encoder, clip=clip, text=text, **extra).out(0)
    neg = g.node(encoder, clip=clip, text=negative, **extra).out(0)
    samples = g.node("KSampler", model=model, seed=1, steps=steps, cfg=4.0, sampler_name=sampler, scheduler="simple",
                     positive=positive, negative=neg, latent_image=latent, denoise=1.0).out(0)
    return g.node("SaveLatent", samples=samples, filename_prefix="latents/faults")


# --- through the executor -----------------------------------------------------------------------------


def test_one_nan_image_in_a_batch_is_named_with_its_index(comfyui):
    """Item 4: one NaN image in a batch of 8 got 'the model returned NaN, try weight_dtype'."""
    from comfy_execution.graph_utils import GraphBuilder
    from safetensors.torch import save_file

    samples = torch.zeros((8, 16, 8, 8))
    samples[6, 0, 0, 0] = float("nan")
    save_file({"latent_tensor": samples, "latent_format_version_0": torch.tensor([])},
              str(comfyui.workdir / "input" / "flowanime_nan_batch.latent"))
    g = GraphBuilder()
    latent = g.node("LoadLatent", latent="flowanime_nan_batch.latent").out(0)
    sampling_graph(g, latent)
    message = graph_error(comfyui.run(g.finalize(), expect_success=False))
    assert "image 6 of 8" in message and "latent" in message and "ModelComputeDtype" not in message


@pytest.mark.parametrize("encoder", ["CLIPTextEncode", ENCODER])
def test_an_overflowing_prompt_weight_is_named(comfyui, encoder):
    """Item 4: (tag:1e308) gave 'the model returned NaN'. Stock CLIPTextEncode's conditioning is
    caught by the sampler's input check, ours by the encoder itself."""
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    latent = g.node("EmptySD3LatentImage", width=64, height=64, batch_size=1).out(0)
    sampling_graph(g, latent, text="1girl, (tag:1e308)", encoder=encoder)
    message = graph_error(comfyui.run(g.finalize(), expect_success=False))
    assert "1e308" in message or "1e+308" in message
    assert "weight" in message and "ModelComputeDtype" not in message


def test_a_break_flood_is_refused_quickly_with_the_cap(comfyui):
    """Item 6: "tag BREAK " * 10000 became 10,000 CLIP chunks (~60 minutes of CLIP-L here)."""
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    latent = g.node("EmptySD3LatentImage", width=64, height=64, batch_size=1).out(0)
    sampling_graph(g, latent, text="tag BREAK " * 10000, encoder=ENCODER)
    start = time.perf_counter()
    message = graph_error(comfyui.run(g.finalize(), expect_success=False))
    assert time.perf_counter() - start < 60
    assert "CLIP chunks" in message and "BREAK" in message


@pytest.mark.parametrize("text, chunks", [("by wlop BREAK BREAK BREAK 1girl BREAK", 2), ("by a BREAK " * 40, 40)])
def test_empty_breaks_cost_nothing_and_moderate_breaks_encode(comfyui, text, chunks):
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]
    cond, report = comfyui.node_class(ENCODER)().encode(clip, text, 20)["result"]
    assert torch.isfinite(cond[0][0]).all() and f"clip chunks (l): {chunks}\n" in report


@pytest.mark.parametrize("text, fragment", [
    ("(a:" + "1" * 40000 + "x)", None),
    ("(" * 2000 + "tag" + ")" * 2000, None),  # an explicit bracket stack: any depth, no RecursionError
    ("a" * 1_000_001, "characters"),
    ("\u202etag\u202c, \x00\x1b[31m, \u200b, " * 2000, None),
])
def test_hostile_prompts_through_the_normaliser_node(comfyui, text, fragment):
    """Items 1 and 8: the weight regex froze ComfyUI for ~36 s; 2000-deep parentheses raised
    RecursionError. The normaliser's size cap (1,000,000 characters) is a clear error."""
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    normalized = g.node(NORMALIZER, text=text, drop_quality_tags=True, artists_to_own_chunk=True, lowercase=False)
    preview = g.node("PreviewAny", source=normalized.out(0))
    start = time.perf_counter()
    result = comfyui.run(g.finalize(), expect_success=fragment is None)
    assert time.perf_counter() - start < 30
    if fragment is None:
        assert result.outputs[preview.id]["text"][0]
    else:
        assert fragment in graph_error(result)


@pytest.mark.parametrize("text", ["\u202etag\u202c, \x00\x1b[31m, \u200b, \ufeff(a:1e-300), " * 20, "(" * 33 + "a" + ")" * 33])
def test_hostile_prompts_through_the_encoder_end_finite_or_named(comfyui, text):
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]
    try:
        cond, report = comfyui.node_class(ENCODER)().encode(clip, text, 20)["result"]
    except ValueError as err:
        assert "parentheses" in str(err)
    else:
        assert torch.isfinite(cond[0][0]).all() and report


def test_a_rising_schedule_is_integrated_through_the_executor(comfyui):
    """Item 3: adaptive methods returned a rising (FlipSigmas) schedule's input with 0 model calls."""
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    model = g.node("UNETLoader", unet_name=kit.SD3_MMDIT, weight_dtype="default").out(0)
    clip = g.node("CLIPLoader", clip_name=kit.CLIP_L, type="sd3").out(0)
    positive = g.node("CLIPTextEncode", clip=clip, text="1girl").out(0)
    latent = g.node("EmptySD3LatentImage", width=64, height=64, batch_size=1).out(0)
    guider = g.node("CFGGuider", model=model, positive=positive, negative=positive, cfg=1.0).out(0)
    # Ending below 1: ComfyUI's own CONST.inverse_noise_scaling divides by 1 - sigma.
    sigmas = g.node("BasicScheduler", model=model, scheduler="simple", steps=6, denoise=0.5).out(0)
    rising = g.node("FlipSigmas", sigmas=sigmas).out(0)
    sampler = g.node(kit.SAMPLER_NODE, **ODE).out(0)
    noise = g.node("DisableNoise").out(0)
    samples = g.node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=sampler, sigmas=rising,
                     latent_image=latent).out(0)
    save = g.node("SaveLatent", samples=samples, filename_prefix="latents/faults")
    latent = assert_finite_latent(comfyui, comfyui.run(g.finalize()), save.id)
    assert latent.abs().max() > 0, "the zero latent came back unchanged: the rising schedule was not integrated"


def test_an_extreme_flux_resolution_shift_samples(comfyui):
    """Item 7: flux at a small image with the largest base resolution underflowed the shift."""
    from comfy_execution.graph_utils import GraphBuilder

    g = GraphBuilder()
    latent = g.node("EmptySD3LatentImage", width=64, height=64, batch_size=1).out(0)
    save = sampling_graph(g, latent, sampler="euler",
                          patch={"resolution_shift": "flux", "base_resolution": 16384, "latent": latent})
    assert_finite_latent(comfyui, comfyui.run(g.finalize()), save.id)


@pytest.mark.parametrize("overrides", [
    dict(log10_rtol=-12.0, log10_atol=-12.0),  # item 5: below float32; clamped, bounded by the budget
    dict(max_model_calls=7),  # dopri5's smallest: one step (the next test: below it)
    dict(max_model_calls=4, method="bosh3"),
    dict(sigma_min=0.5),
    dict(sigma_min=0.00001, method="heun_euler"),
    dict(log10_rtol=0.0, log10_atol=0.0, method="adams_pc"),
])
def test_extreme_sampler_widget_values_end_finite(comfyui, overrides):
    graph, save_id = kit.txt2img("sd3", scheduler="simple", steps=4, batch=1, patch={"shift": 3.0},
                                 custom_sampler={**ODE, **overrides})
    start = time.perf_counter()
    assert_finite_latent(comfyui, comfyui.run(graph), save_id)
    assert time.perf_counter() - start < 300


def test_a_budget_below_one_step_of_dopri5_is_refused_naming_the_input(comfyui):
    """max_model_calls 4 lets dopri5 make its first call and no step: the image was that call's
    flat prediction at sigma_max, with a console warning only (found by a review helper)."""
    graph, _ = kit.txt2img("sd3", scheduler="simple", steps=4, batch=1, patch={"shift": 3.0},
                           custom_sampler={**ODE, "max_model_calls": 6})
    message = graph_error(comfyui.run(graph, expect_success=False))
    assert "'max_model_calls' must be at least 7 for dopri5" in message


# --- through ComfyUI's node functions, for faults a graph cannot express ----------------------------------


@pytest.fixture(scope="module")
def sd3(comfyui):
    model = comfyui.node_class("UNETLoader")().load_unet(kit.SD3_MMDIT, "default")[0]
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "sd3")[0]
    encode = comfyui.node_class("CLIPTextEncode")().encode
    return model, encode(clip, "1girl")[0], encode(clip, "lowres")[0]


def faulty(model, fault):
    """A clone whose diffusion-model output goes through fault(call index, output)."""
    m, calls = model.clone(), []

    def wrapper(apply_model, args):
        calls.append(1)
        return fault(len(calls) - 1, apply_model(args["input"], args["timestep"], **args["c"]))

    m.set_model_unet_function_wrapper(wrapper)
    return m, calls


def sampler_custom(comfyui, model, positive, negative, sigmas, method="dopri5", latent=None, **overrides):
    sampler = comfyui.node_class(kit.SAMPLER_NODE)().get_sampler(**{**ODE, "method": method, **overrides})[0]
    latent = latent or {"samples": torch.zeros((2, 16, 8, 8))}
    out = comfyui.node_class("SamplerCustom")().sample(model, True, 3, 4.0, positive, negative, sampler,
                                                       torch.tensor(sigmas, dtype=torch.float32), latent)
    return out[0]["samples"]


@pytest.mark.parametrize("sigmas, fragment", [
    ([float("nan"), 0.0], "sigmas[0] is nan"),
    ([float("inf"), 0.0], "sigmas[0] is inf"),
    ([-1.0, 0.0], "sigmas[0] is -1"),
    ([1e30, 0.0], "sigmas[0] is 1e+30"),
    ([1.0, 0.3, 0.7, 0.0], "fixed-step"),
])
def test_bad_custom_sigmas_are_named_before_any_model_call(comfyui, sd3, sigmas, fragment):
    """Item 8: nan,0 / inf,0 gave an internal ValueError / ZeroDivisionError; -1,0 ran the model at -1."""
    model, pos, neg = sd3
    observed, calls = faulty(model, lambda i, out: out)
    with pytest.raises(ValueError, match="sigmas|fixed-step") as err:
        sampler_custom(comfyui, observed, pos, neg, sigmas)
    assert fragment in str(err.value) and not calls


@pytest.mark.parametrize("method", ["heun_euler", "fehlberg2", "dopri5", "adams_pc", "rk4"])
def test_a_nan_on_the_last_model_call_is_an_error(comfyui, sd3, method):
    """Item 2: heun_euler and fehlberg2 returned their unchecked final denoise call: a NaN image."""
    model, pos, neg = sd3
    clean, calls = faulty(model, lambda i, out: out)
    sampler_custom(comfyui, clean, pos, neg, [1.0, 0.5, 0.0], method)
    last = len(calls) - 1  # CFG runs cond and uncond in one call here
    broken, _ = faulty(model, lambda i, out: out * float("nan") if i == last else out)
    with pytest.raises(Exception, match="returned NaN or inf"):
        out = sampler_custom(comfyui, broken, pos, neg, [1.0, 0.5, 0.0], method)
        assert torch.isfinite(out).all()


def test_a_nan_on_the_first_call_stops_dopri5_at_once(comfyui, sd3):
    """Item 8: dopri5 spent 6 calls before noticing a NaN on its first."""
    model, pos, neg = sd3
    broken, calls = faulty(model, lambda i, out: out * float("nan"))
    with pytest.raises(Exception, match="returned NaN or inf"):
        sampler_custom(comfyui, broken, pos, neg, [1.0, 0.0])
    assert len(calls) == 1


def test_denoise_once_checks_the_model_output(comfyui, sd3):
    """Item 2: a start sigma at or below sigma_min returned the model's output unchecked."""
    model, pos, neg = sd3
    broken, calls = faulty(model, lambda i, out: out * float("nan"))
    with pytest.raises(Exception, match="returned NaN or inf"):
        sampler_custom(comfyui, broken, pos, neg, [0.3, 0.0], sigma_min=0.5)
    assert len(calls) == 1


@pytest.mark.parametrize("fault, fragment", [
    (lambda i, out: out * 1e30 if i >= 1 else out, "out of range|NaN or inf"),
    (lambda i, out: torch.randn_like(out) * 3, None),
])
def test_huge_or_pure_noise_model_outputs(comfyui, sd3, fault, fragment):
    model, pos, neg = sd3
    broken, _ = faulty(model, fault)
    if fragment is None:
        try:
            out = sampler_custom(comfyui, broken, pos, neg, [1.0, 0.0])
        except Exception as err:
            assert "log10_rtol" in str(err)
        else:
            assert torch.isfinite(out).all()
    else:
        with pytest.raises(Exception, match=fragment):
            sampler_custom(comfyui, broken, pos, neg, [1.0, 0.0])


@pytest.mark.parametrize("method", ["dopri5", "adams_pc"])
def test_a_half_precision_latent_samples_finite(comfyui, sd3, method):
    """Item 4: an fp16 latent into an fp32 model."""
    model, pos, neg = sd3
    latent = {"samples": torch.zeros((2, 16, 8, 8), dtype=torch.float16)}
    out = sampler_custom(comfyui, model, pos, neg, [1.0, 0.5, 0.0], method, latent=latent)
    assert torch.isfinite(out).all() and out.std() > 0


def test_the_flux_shift_at_8192_px_gives_a_usable_schedule(comfyui, sd3):
    """Item 7: flux at 8192 px and base 1024 gave an all-1 sigma table, which failed later inside."""
    import comfy.samplers

    model, _, _ = sd3
    big = {"samples": torch.zeros((1, 16, 1, 1)).expand(1, 16, 1024, 1024)}  # 8192 px, no memory
    patched = comfyui.node_class(kit.PATCH)().patch(model, **{**kit.PATCH_DEFAULTS, "resolution_shift": "flux",
                                                             "latent": big})[0]
    sigmas = comfy.samplers.calculate_sigmas(patched.get_model_object("model_sampling"), "simple", 10)
    assert torch.isfinite(sigmas).all() and bool((sigmas[1:] < sigmas[:-1]).all())
