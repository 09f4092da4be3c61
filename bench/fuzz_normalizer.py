"""Fuzz: is the booru-prompt normaliser idempotent on random fragments? Prints a table and examples.

Random texts of up to 30 characters from four alphabets (backslashes, `@` and BREAK; full-width
syntax and CJK; brackets and `|`; quality lists), some starting with a fragment that exercises one
rule, each normalised under the default options, a switch set or a random preset, then normalised
again. The tests hold the same property with hypothesis on fewer examples; this runs many more.

    python bench/fuzz_normalizer.py [--seed 1] [--examples 50000] [--show 5]
"""

from __future__ import annotations

import argparse
import random
import sys
import types
from pathlib import Path

PACK_ROOT = Path(__file__).resolve().parents[1]
if "flowanime" not in sys.modules:
    pkg = types.ModuleType("flowanime")
    pkg.__path__ = [str(PACK_ROOT)]
    sys.modules["flowanime"] = pkg

from flowanime.prompt.booru import NormalizeOptions, normalize, preset_options  # noqa: E402

ALPHABETS = {
    "escapes, @, BREAK": "ab_ (),:\\.@1BREAK\n",
    "full width, CJK": "ab_ (),:\u3000\uff0c\u3001\uff08\uff09\u521d\u00a0e\u0301\u00e9\uff1a\uff11\uff41\uff3f\uff0d\uff01\uff20"
                       "\n\u00ad\u200b",
    "brackets, |": "ab (),:;^{}[]|",
    "quality lists": "masterpiece, best quality{}[]():1.2_",
}
OPENINGS = ["(,", "{masterpiece, ", "\uff08a\uff1a1.2\uff09", "(a, ", ":, "]
OPTIONS = [NormalizeOptions(), NormalizeOptions(drop_quality_tags=True, artists_to_own_chunk=True, lowercase=True),
           *(preset_options(p, NormalizeOptions()) for p in ("nekofantasia", "rouwei", "nai-v2-fm", "anima"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--examples", type=int, default=50000)
    parser.add_argument("--show", type=int, default=5, help="examples printed per alphabet")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    names = list(ALPHABETS)
    tried = dict.fromkeys(names, 0)
    failed = dict.fromkeys(names, 0)
    for _ in range(args.examples):
        name = rng.choice(names)
        text = "".join(rng.choice(ALPHABETS[name]) for _ in range(rng.randint(1, 30)))
        if rng.random() < 0.3:
            text = rng.choice(OPENINGS) + text
        options = rng.choice(OPTIONS)
        once = normalize(text, options)
        twice = normalize(once, options)
        tried[name] += 1
        if twice != once:
            failed[name] += 1
            if failed[name] <= args.show:
                print(f"{name}: {text!r} -> {once!r} -> {twice!r}")
    print(f"\n{'alphabet':<20} {'examples':>9} {'not idempotent':>15}")
    for name in names:
        print(f"{name:<20} {tried[name]:>9} {failed[name]:>15}")
    print(f"{'all':<20} {sum(tried.values()):>9} {sum(failed.values()):>15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
