"""Batch explanations: overlays as PNG, one JSON and one self-contained HTML report.

Run::

    python -m explain --model OUT image1.jpg image2.png --out DIR [--methods gradcam scorecam]
        [--layer layer4] [--scorecam_mode fast]

DIR receives ``<image-stem>_<method>.png`` overlays, ``explanations.json`` and ``report.html``
(images inlined as base64, so the file can be mailed or opened offline).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from explain.explainer import METHOD_NAMES, Explainer, Explanation


def _data_uri(img: Image.Image, size: int = 320) -> str:
    thumb = img.copy()
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def render_html(items: Sequence[tuple[str, Image.Image, Explanation]]) -> str:
    """One self-contained HTML page: per image the input, each overlay, the top classes and text."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>DermXAI explanations</title>",
        "<style>body{font-family:sans-serif;margin:2em}figure{display:inline-block;margin:4px}"
        "figcaption{text-align:center}section{border-bottom:1px solid #ccc;padding:1em 0}</style>",
        "</head><body><h1>DermXAI explanations</h1>",
        "<p>Research demo, not a medical device.</p>",
    ]
    for name, rgb, ex in items:
        top = sorted(ex.probabilities.items(), key=lambda kv: -kv[1])[:3]
        figures = [f"<figure><img src='{_data_uri(rgb)}'><figcaption>input</figcaption></figure>"]
        figures += [
            f"<figure><img src='{_data_uri(img)}'><figcaption>{html.escape(m)}</figcaption>"
            "</figure>"
            for m, img in ex.overlays.items()
        ]
        parts += [
            f"<section><h2>{html.escape(name)}</h2>",
            *figures,
            "<p>" + ", ".join(f"{html.escape(k)} {v:.1%}" for k, v in top) + "</p>",
            f"<p>{html.escape(ex.text)}</p></section>",
        ]
    parts.append("</body></html>")
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(
        prog="python -m explain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--model", required=True, help="saved model folder or Hub id")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--scorecam_mode", choices=("fast", "exact"), default="fast")
    args = parser.parse_args(argv)
    try:
        explainer = Explainer.from_pretrained(args.model, scorecam_mode=args.scorecam_mode)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    records, items, failures = [], [], 0
    for path in args.images:
        try:
            rgb, _, _ = explainer.preprocess(path)
            ex = explainer.explain(rgb, methods=args.methods, layer=args.layer)
        except (OSError, ValueError) as err:
            print(f"{path}: {err}", file=sys.stderr)
            records.append({"image": str(path), "error": str(err)})
            failures += 1
            continue
        files = {}
        for method, img in ex.overlays.items():
            target = args.out / f"{path.stem}_{method.replace('+', 'p')}.png"
            img.save(target)
            files[method] = target.name
        records.append({"image": str(path), **ex.to_dict(), "overlays": files})
        items.append((path.name, rgb, ex))
        print(f"{path}: {ex.label} ({ex.probabilities[ex.label]:.1%})")
    (args.out / "explanations.json").write_text(json.dumps(records, indent=2))
    (args.out / "report.html").write_text(render_html(items), encoding="utf-8")
    return 1 if failures == len(args.images) else 0


if __name__ == "__main__":
    sys.exit(main())
