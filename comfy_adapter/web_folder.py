"""Whether ComfyUI can serve the editor extension and the example workflows from this pack's folder.

ComfyUI serves them at URLs named after the folder (server.py: `web.static('/extensions/' + name,
dir)` in 0.3.64 and at server.py@002c3fb; the /extensions listing quotes the name; the templates
under `/api/workflow_templates/` + name, app/custom_node_manager.py). aiohttp matches such a static
route only when the name needs no percent-escape in a URL path: a folder unpacked as
`FlowAnime-main (1)` loads the nodes, but the editor gets 404 for the extension and the templates.
"""

from __future__ import annotations

import logging
import os
import re

log = logging.getLogger("FlowAnime")

# RFC 3986 path characters that stand for themselves (unreserved, sub-delims, ':' and '@')
URL_PLAIN_NAME = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@-]+")


def folder_name_problem(name: str) -> str | None:
    """The warning for a folder name ComfyUI cannot serve the extension from, or None."""
    if URL_PLAIN_NAME.fullmatch(name):
        return None
    return (f"FlowAnime: this pack's folder is named {name!r}. ComfyUI serves a pack's editor extension and "
            "example workflows at URLs named after its folder, and cannot serve them from a name with a space, "
            "a non-ASCII letter or a bracket: the nodes work, but the token counter, the reports on the nodes, "
            "the preset sizes and the templates are missing. Rename the folder to FlowAnime and restart ComfyUI.")


def warn_about_folder_name(entry_file: str) -> str | None:
    """Logs the warning for the folder that holds the pack's entry file (its __init__.py)."""
    problem = folder_name_problem(os.path.basename(os.path.dirname(os.path.abspath(entry_file))))
    if problem:
        log.warning(problem)
    return problem
