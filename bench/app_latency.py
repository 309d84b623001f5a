"""Space latency: cold start to first answer, then per-request latency per CAM method.

    python bench/app_latency.py                       # the embedded demo model (hf_model/demo)
    python bench/app_latency.py --model random-resnet50 --repeats 5
    python bench/app_latency.py --model path/to/export

Cold start = spawning ``python app.py`` until its first ``/explain`` answer (Grad-CAM, layer4)
arrives through gradio_client; the target is <= 15 s on 2 vCPU. Per-request latency goes
through the same server for each method alone and for all three. The peer is the same
``explain.Explainer`` call in this process with no server, so the ratio is the cost of serving
(upload, queue, PNG overlays, download). CAM implementations against pytorch-grad-cam, torch-cam
and Captum are compared in ``bench/explain_latency.py``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradio_client import Client, handle_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

METHODS = ("Grad-CAM", "Grad-CAM++", "Score-CAM")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _random_resnet50(out: Path) -> Path:
    """A random-init ResNet-50 export at 224 px: the demo model's size and cost."""
    import timm
    from timm.data import resolve_data_config

    from hf_model.export import save_pretrained
    from lesions.isic import CLASSES

    model = timm.create_model("resnet50", pretrained=False, num_classes=len(CLASSES)).eval()
    return save_pretrained(
        model, out, labels=list(CLASSES), data_config=resolve_data_config(model=model)
    )


def _wait_for_client(url: str, process: subprocess.Popen, timeout: float) -> Client:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode} before serving")
        try:
            return Client(url, verbose=False, analytics_enabled=False)
        except Exception:  # the server is not up yet: connection refused or 502
            time.sleep(0.1)
    raise TimeoutError(f"app.py did not serve {url} within {timeout:.0f} s")


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _in_process_latency(
    model_source: str, image: Path, methods: list[str], layer: str, repeats: int
) -> list[float]:
    """The same explanation computed in this process by ``explain.Explainer`` (no server)."""
    from app import METHODS as APP_METHODS
    from explain import Explainer

    explainer = Explainer.from_pretrained(model_source)
    names = tuple(APP_METHODS[m] for m in methods)
    explainer.explain(image, methods=names, layer=layer)  # warm-up
    return _timed(lambda: explainer.explain(image, methods=names, layer=layer), repeats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("MODEL_ID", str(ROOT / "hf_model/demo")))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)

    import app  # before the clock starts: the examples exist, this process's imports are done

    image = app.load_examples()[0].image
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model == "random-resnet50":
            model = str(_random_resnet50(Path(tmp) / "resnet50"))
        port = _free_port()
        env = {**os.environ, "MODEL_ID": model, "GRADIO_SERVER_PORT": str(port)}
        env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        env["GRADIO_SERVER_NAME"] = "127.0.0.1"
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env)
        try:
            client = _wait_for_client(f"http://127.0.0.1:{port}/", process, args.timeout)
            up = time.perf_counter() - start
            client.predict(handle_file(str(image)), ["Grad-CAM"], args.layer, api_name="/explain")
            cold = time.perf_counter() - start
            print(f"model: {args.model}; {os.cpu_count()} CPUs; layer {args.layer}")
            print(f"cold start: server up {up:.2f} s, first answer {cold:.2f} s (target <= 15 s)")

            print(
                f"\n{'methods':<12}{'app median':>12}{'app p90':>10}{'in-process':>12}{'ratio':>8}"
            )
            for method in (*METHODS, "all three"):
                methods = list(METHODS) if method == "all three" else [method]
                times = _timed(
                    lambda methods=methods: client.predict(
                        handle_file(str(image)), methods, args.layer, api_name="/explain"
                    ),
                    args.repeats,
                )
                median = statistics.median(times)
                p90 = sorted(times)[max(0, round(0.9 * len(times)) - 1)]
                peer = statistics.median(
                    _in_process_latency(model, image, methods, args.layer, args.repeats)
                )
                print(
                    f"{method:<12}{median:>11.3f}s{p90:>9.3f}s{peer:>11.3f}s{median / peer:>7.2f}x"
                )
        finally:
            process.terminate()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
