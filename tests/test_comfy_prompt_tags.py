"""The normaliser node's tag list, report and presets, and the live counter's route, inside the real ComfyUI."""

import asyncio
import gzip
import logging
import sys
import types

import flowanime_testkit as kit
import pytest

NORMALIZER = "FlowAnimeBooruPromptNormalizer"


def support(comfyui):
    return comfyui.pack_submodule("comfy_adapter.prompt_support")


def test_a_prompt_saved_before_the_new_options_still_runs(comfyui):
    """An API prompt with only the four original inputs: validates, runs, gives both outputs."""
    prompt = {
        "1": {"class_type": NORMALIZER, "inputs": {"text": "blueeyes, long_hair, not_a_tag_xyz", "drop_quality_tags": False,
                                                   "artists_to_own_chunk": False, "lowercase": False}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["1", 1]}},
    }
    result = comfyui.run(prompt)
    assert result.outputs["2"]["text"][0] == "blueeyes, long hair, not a tag xyz"  # aliases only when asked
    report = result.outputs["1"]["tag_report"][0]
    assert result.outputs["3"]["text"][0] == report
    assert "unknown (1): not a tag xyz" in report.splitlines() and report.startswith("preset: custom")


def test_node_resolves_aliases_and_applies_a_preset(comfyui):
    node = comfyui.node_class(NORMALIZER)()
    out = node.normalize("masterpiece, blueeyes, wlop, 1girl", False, False, False, resolve_aliases=True, preset="rouwei")
    assert out["result"][0] == "by wlop, masterpiece BREAK blue eyes, 1girl"
    assert "aliases (1): blueeyes -> blue eyes [1,762,765]" in out["result"][1]
    assert out["ui"]["tag_report"] == [out["result"][1]]
    none = node.normalize("blueeyes", False, False, False, resolve_aliases=True, tag_list_csv="none")
    assert none["result"] == ("blueeyes", "preset: custom\ntag list: none (no tags checked)")


def test_users_tag_list_must_live_in_the_user_directory(comfyui, tmp_path):
    import folder_paths

    user = tmp_path / "user"
    (user / "tags").mkdir(parents=True)
    (user / "tags" / "mine.csv.gz").write_bytes(gzip.compress(b'my_oc,4,12,"oc_alias"\n'))
    (tmp_path / "outside.csv").write_text("x,0,1,\n", encoding="utf-8")
    (user / "escape.csv").symlink_to(tmp_path / "outside.csv")
    previous = folder_paths.get_user_directory()
    folder_paths.set_user_directory(str(user))
    try:
        node = comfyui.node_class(NORMALIZER)()
        out = node.normalize("oc_alias, x", False, False, False, resolve_aliases=True, tag_list_csv="tags/mine.csv.gz")
        assert out["result"][0] == "my oc, x"
        assert "tag list: tags/mine.csv.gz (user directory), 1 tags" in out["result"][1]
        for outside in ("../outside.csv", str(tmp_path / "outside.csv"), "escape.csv", "/etc/passwd"):
            with pytest.raises(ValueError, match="'tag_list_csv' must name a file inside ComfyUI's user directory"):
                node.normalize("x", False, False, False, tag_list_csv=outside)
        with pytest.raises(ValueError, match="'tag_list_csv'"):
            node.normalize("x", False, False, False, tag_list_csv="tags/missing.csv")
    finally:
        folder_paths.set_user_directory(previous)


@pytest.mark.parametrize("linked", [False, True])
def test_a_tag_list_edited_on_disk_runs_the_node_again(comfyui, tmp_path, linked):
    """ComfyUI reuses a node's last output while its inputs are unchanged (one executor, two runs); a
    tag list edited on disk changes what the normaliser outputs, so the node asks to run again then,
    and only then. With the file's name linked from another node, ComfyUI gives IS_CHANGED no name: the
    node runs every time."""
    import copy
    import os
    import uuid

    import execution
    import folder_paths

    user = tmp_path / "user"
    user.mkdir()
    csv = user / "mine.csv"
    csv.write_text('my_oc,4,12,"oc_alias"\n', encoding="utf-8")
    previous = folder_paths.get_user_directory()
    folder_paths.set_user_directory(str(user))
    prompt = {
        "1": {"class_type": NORMALIZER, "inputs": {"text": "oc_alias", "drop_quality_tags": False, "artists_to_own_chunk": False,
                                                   "lowercase": False, "resolve_aliases": True, "tag_list_csv": "mine.csv"}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }
    if linked:
        prompt["3"] = {"class_type": "PrimitiveString", "inputs": {"value": "mine.csv"}}
        prompt["1"]["inputs"]["tag_list_csv"] = ["3", 0]
    try:
        valid, error, outputs, _ = comfyui.validate(prompt)
        assert valid, error
        server = kit._HeadlessServer()
        executor = kit.make_executor(execution.PromptExecutor, server)

        def run():
            # each queued prompt is a new dict (ComfyUI stores the node's IS_CHANGED answer in it)
            executor.execute(copy.deepcopy(prompt), str(uuid.uuid4()), {}, outputs)
            assert executor.success
            cached = [n for event, data in executor.status_messages if event == "execution_cached" for n in data["nodes"]]
            return executor.history_result["outputs"]["2"]["text"][0], "1" in cached

        assert run() == ("my oc", False)
        assert run() == ("my oc", not linked)  # nothing changed: ComfyUI's cache serves it
        stamp = csv.stat().st_mtime_ns
        csv.write_text('their_oc,4,12,"oc_alias"\n', encoding="utf-8")
        os.utime(csv, ns=(stamp + 2_000_000_000, stamp + 2_000_000_000))
        assert run() == ("their oc", False)
        assert run() == ("their oc", not linked)
    finally:
        folder_paths.set_user_directory(previous)


LONG = ", ".join(f"{a} {b}" for a in ("long", "silver", "blue", "pleated", "red") for b in
                 ("hair", "eyes", "school uniform", "skirt", "ribbon", "thighhighs", "bow"))
COUNTER_TABLE = [("", 20), ("1girl, solo", 20), ("by wlop BREAK 1girl BREAK BREAK smile", 20), (LONG * 2, 20),
                 (LONG * 2, 0), ("(red eyes:1.3), karin \\(blue archive\\), " + LONG, 5), ("word " * 200, 20),
                 ("café, 初音ミク, " + "a " * 66 + "初音", 0)]  # byte-level tokens; a character cut between chunks


@pytest.mark.parametrize("text, backtrack", COUNTER_TABLE, ids=range(len(COUNTER_TABLE)))
def test_counter_equals_the_encoders_chunking(comfyui, text, backtrack):
    """The counter (stock tokenizer files, no model) against the encoder on a loaded CLIP."""
    clip = comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0]
    encoded = comfyui.pack_submodule("comfy_adapter.clip").tokenize(clip, text, backtrack)
    counted = support(comfyui).count_tokens(text, backtrack)
    assert counted["chunks"] == encoded.chunkings[0]["chunks"]
    assert counted["split_tags"] == encoded.split_tags
    assert counted["tokens"] == sum(len([t for t, _ in c[1:] if t != 49407]) for c in encoded.tokens["l"])
    assert "Ã" not in str(counted)  # the characters, not CLIP's byte symbols


def test_counter_counts_the_normalisers_output(comfyui):
    counted = support(comfyui).count_tokens("masterpiece, long_hair, by wlop", 20,
                                            {"preset": "rouwei", "resolve_aliases": False})
    assert counted["text"] == "by wlop, masterpiece BREAK long hair"
    assert [c["segment"] for c in counted["chunks"]] == [0, 1]


def test_counter_shows_what_the_node_outputs_with_the_bundled_list(comfyui):
    """The node reads the bundled tag list by default; so does the counter (here it tells the five-word
    qualifier from a sentence)."""
    text = "natsuki (doki doki literature club), 1girl, smile"
    node_out = comfyui.node_class("FlowAnimeBooruPromptNormalizer")().normalize(text, False, False, False)["result"][0]
    counted = support(comfyui).count_tokens(text, 20, {"preset": "custom"})
    assert counted["text"] == node_out == "natsuki \\(doki doki literature club\\), 1girl, smile"


def test_counter_is_bounded(comfyui):
    counted = support(comfyui).count_tokens("tag, " * 5000, 20)
    assert "too long" in counted["error"]


def test_route_answers_and_never_fails(comfyui, monkeypatch, caplog):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    routes = web.RouteTableDef()
    fake = types.ModuleType("server")
    fake.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=routes))
    monkeypatch.setitem(sys.modules, "server", fake)
    module = support(comfyui)
    assert module.register_routes()

    async def ask():
        app = web.Application()
        app.add_routes(routes)
        async with TestClient(TestServer(app)) as client:
            ok = await (await client.post(module.ROUTE, json={"text": "a, b BREAK c", "comma_backtrack": 20})).json()
            refused = {}
            for name, body in [("not json", b"not json"), ("empty", b""), ("a list", b"[1, 2]"), ("null", b"null"),
                               ("nested", b"[" * 100_000 + b"]" * 100_000), ("text a number", b'{"text": 5}'),
                               ("backtrack a bool", b'{"text": "a", "comma_backtrack": true}'),
                               ("normalizer a list", b'{"text": "a", "normalizer": [1]}')]:
                response = await client.post(module.ROUTE, data=body, headers={"Content-Type": "application/json"})
                refused[name] = (response.status, (await response.json())["error"])
            # a prompt the encoder refuses is an answer to show, not a bad request
            too_deep = await client.post(module.ROUTE, json={"text": "(" * 1000 + "a" + ")" * 1000})
            too_deep = (too_deep.status, await too_deep.json())
            # typing an embedding's name: each prefix counted would log "embedding:... does not exist"
            with caplog.at_level(logging.WARNING):
                typing = await (await client.post(module.ROUTE, json={"text": "embedding:easyneg, 1girl"})).json()
        return ok, refused, too_deep, typing

    ok, refused, too_deep, typing = asyncio.run(ask())
    assert typing["tokens"] > 0 and not [r for r in caplog.records if "does not exist" in r.getMessage()]
    with caplog.at_level(logging.WARNING):  # the node's own encoding still warns
        comfyui.node_class("CLIPLoader")().load_clip(kit.CLIP_L, "stable_diffusion")[0].tokenize("embedding:easyneg")
    assert [r for r in caplog.records if "embedding:easyneg does not exist" in r.getMessage()]
    assert [c["tokens"] for c in ok["chunks"]] == [3, 1] and ok["tokens"] == 4
    for name, (status, error) in refused.items():
        assert status == 400 and error.startswith("bad request: "), name
        assert "attribute" not in error and "recursion" not in error, (name, error)  # no Python internals
    assert too_deep[0] == 200 and "nests parentheses" in too_deep[1]["error"]


def test_a_second_copy_of_the_pack_leaves_the_route_to_the_first(comfyui, monkeypatch):
    """Two copies in custom_nodes/ (a git clone beside a zip download): each registers the counter's
    route, and aiohttp refuses a second POST on one path, which stopped ComfyUI's start."""
    from aiohttp import web

    routes = web.RouteTableDef()
    fake = types.ModuleType("server")
    fake.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=routes))
    monkeypatch.setitem(sys.modules, "server", fake)
    module = support(comfyui)
    assert module.register_routes() and module.register_routes()
    assert [r.method for r in routes if r.path == module.ROUTE] == ["POST"]
    web.Application().add_routes(routes)  # what ComfyUI's server does at start


def test_no_route_without_a_running_server(comfyui, monkeypatch):
    monkeypatch.delitem(sys.modules, "server", raising=False)
    assert support(comfyui).register_routes() is False
