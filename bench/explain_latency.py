"""Latency of our CAMs against pytorch-grad-cam, torch-cam and Captum, in one process.

Run (torch keeps its default thread count; the script prints it)::

    python bench/explain_latency.py                 # fast peers only
    python bench/explain_latency.py --slow-peers    # + exact Score-CAMs (minutes)
    python bench/explain_latency.py --fidelity 50 --model hf_model/demo --size 128 \
        [--device cuda] [--images DIR]   # fast vs exact Score-CAM only

Same random-init ResNet-50 (9 classes), same 224x224 image, same machine; median of ``--repeats``
runs after one warm-up. Ratios are peer seconds / our seconds (> 1: we are faster). With
``--fidelity N`` it generates N SynthDerm images and reports the Spearman correlation between
fast and exact Score-CAM maps.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere


def _time(fn: Callable[[], object], repeats: int, *, warmup: bool = True) -> float:
    """Median seconds of ``repeats`` runs, after one untimed warm-up run unless ``warmup=False``."""

    def call() -> None:
        fn()
        if torch.cuda.is_initialized():  # GPU work is asynchronous: wait for it
            torch.cuda.synchronize()

    if warmup:
        call()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def latency(model: torch.nn.Module, x: torch.Tensor, repeats: int, slow_peers: bool) -> None:
    """Print seconds per method for ours and the peers, and the ratios."""
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torchcam.methods import GradCAMpp as TCGradCAMpp

    from explain import make_method

    target = int(model(x).argmax())
    ours = {
        "gradcam": make_method("gradcam", model),
        "gradcam++": make_method("gradcam++", model),
        "scorecam (fast)": make_method("scorecam", model),
    }
    results = {f"ours {k}": _time(lambda c=c: c(x, target), repeats) for k, c in ours.items()}
    if slow_peers:
        exact = make_method("scorecam", model, mode="exact")
        results["ours scorecam (exact)"] = _time(lambda: exact(x, target), 1, warmup=False)
    pgc_target = [ClassifierOutputTarget(target)]
    for name, cls in (("gradcam", GradCAM), ("gradcam++", GradCAMPlusPlus)):
        cam = cls(model, [model.layer4])
        results[f"pytorch-grad-cam {name}"] = _time(lambda c=cam: c(x, pgc_target), repeats)
    if slow_peers:
        cam = ScoreCAM(model, [model.layer4])
        cam.batch_size = 16
        results["pytorch-grad-cam scorecam (exact)"] = _time(
            lambda: cam(x, pgc_target), 1, warmup=False
        )

    def torchcam_pp() -> None:
        extractor = TCGradCAMpp(model, target_layer="layer4")
        try:
            extractor(target, model(x))
        finally:
            extractor.remove_hooks()

    results["torch-cam gradcam++"] = _time(torchcam_pp, repeats)

    def captum_gradcam() -> None:
        attr = LayerGradCam(model, model.layer4).attribute(x, target, relu_attributions=True)
        LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), "bilinear")

    results["captum gradcam"] = _time(captum_gradcam, repeats)
    all_three = (
        results["ours gradcam"] + results["ours gradcam++"] + results["ours scorecam (fast)"]
    )
    print(f"torch threads: {torch.get_num_threads()}, input {tuple(x.shape)}, fp32, {x.device}")
    print(f"{'method':40s} {'seconds':>9s} {'peer/ours':>10s}")
    for name, sec in results.items():
        method = name.split(" ", 1)[1]
        mine = results.get(f"ours {method}")
        ratio = f"{sec / mine:9.2f}x" if mine and not name.startswith("ours") else ""
        print(f"{name:40s} {sec:9.3f} {ratio:>10s}")
    print(f"{'ours, all three methods (fast Score-CAM)':40s} {all_three:9.3f}")
    print("torch-cam scorecam: not run (it did not finish within 4 minutes in the issue's run)")


def fidelity(
    model: torch.nn.Module,
    n: int,
    size: int,
    device: str,
    images: Path | None,
    top_ks: list[int],
    scales: list[float],
) -> None:
    """Spearman correlation of fast vs exact Score-CAM over ``n`` SynthDerm images.

    One row per fast-mode setting (``top_ks`` x ``scales``), so the speed/fidelity trade-off is
    measured on the same images. The images are generated (seed 0) unless ``images`` names a
    folder of them (for machines without the data stack, e.g. a GPU box: ``python -m
    lesions.synth`` writes one elsewhere).
    """
    from explain import Explainer, make_method

    if device.startswith("cuda"):  # TF32 convolutions would perturb exact scores; CPU is fp32
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    cfg = timm.data.resolve_data_config({"input_size": (3, size, size)}, model=model)
    explainer = Explainer(model, [f"c{i}" for i in range(model.num_classes)], cfg)
    settings = [(k, scale) for k in top_ks for scale in scales]
    fast = {s: make_method("scorecam", model, top_k=s[0], scale=s[1]) for s in settings}
    exact = make_method("scorecam", model, mode="exact", batch_size=128)
    rhos: dict[tuple[int, float], list[float]] = {s: [] for s in settings}
    seconds: dict[tuple[int, float], list[float]] = {s: [] for s in settings}
    t_exact = []
    with tempfile.TemporaryDirectory() as tmp:
        if images is None:
            from lesions.synth import generate

            images = Path(generate(tmp, n, seed=0, image_size=size + size // 8))
            images = images / "ISIC_2019_Training_Input"
        paths = sorted(images.glob("*.jpg"))[:n]
        if len(paths) < n:
            raise SystemExit(f"--images {images} holds {len(paths)} .jpg files, fewer than {n}")
        for path in paths:
            _, x, _ = explainer.preprocess(path)
            start = time.perf_counter()
            e = exact(x).heatmaps.cpu()  # .cpu() waits for the GPU, if any
            t_exact.append(time.perf_counter() - start)
            for setting, method in fast.items():
                start = time.perf_counter()
                f = method(x).heatmaps.cpu()
                seconds[setting].append(time.perf_counter() - start)
                rhos[setting].append(spearmanr(f.ravel(), e.ravel()).statistic)
    print(f"fast vs exact Score-CAM over {n} SynthDerm images ({size}px, {device}), Spearman:")
    print("top_k  scale   mean  median    min  >=0.9  median s")
    for setting in settings:
        r = np.asarray(rhos[setting])
        print(
            f"{setting[0]:5d} {setting[1]:6.2f} {r.mean():6.3f} {np.median(r):7.3f} "
            f"{r.min():6.3f} {(r >= 0.9).mean():6.2f} {statistics.median(seconds[setting]):9.3f}"
        )
    print(f"exact: median {statistics.median(t_exact):.3f} s per image")
    for setting in settings:
        print(f"per image, top_k {setting[0]} scale {setting[1]}:")
        print("  " + " ".join(f"{r:.3f}" for r in rhos[setting]))


def main() -> None:
    """Parse flags and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--slow-peers",
        action="store_true",
        help="also run exact Score-CAM, ours and pytorch-grad-cam's (minutes)",
    )
    parser.add_argument("--fidelity", type=int, default=0, help="images for fast-vs-exact")
    parser.add_argument(
        "--top-k", type=int, nargs="+", default=[48], help="fast-mode top_k values (--fidelity)"
    )
    parser.add_argument(
        "--scale", type=float, nargs="+", default=[0.5], help="fast-mode scales (--fidelity)"
    )
    parser.add_argument(
        "--images", type=Path, default=None, help="folder of .jpg for --fidelity (default: new)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="resnet50", help="timm name or saved model folder")
    args = parser.parse_args()
    torch.manual_seed(0)
    if Path(args.model).is_dir():  # a saved (trained) model folder
        from hf_model.loading import load_model

        model = load_model(args.model, device=args.device).model
    else:
        model = timm.create_model(args.model, num_classes=9).eval().to(args.device)
    if args.fidelity:
        fidelity(model, args.fidelity, args.size, args.device, args.images, args.top_k, args.scale)
        return
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    latency(model, x.to(args.device), args.repeats, args.slow_peers)


if __name__ == "__main__":
    main()
