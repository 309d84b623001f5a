"""The app served on localhost and driven by gradio_client: requests, concurrency, bad input."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_app import ALL_METHODS, bad_uploads, make_model_dir, odd_uploads

import app

UPLOAD_CAP_MB = 1
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # inside gradio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Serve a tiny resnet18 export on a free localhost port; yield the server's URL."""
    model_dir = make_model_dir(tmp_path_factory.mktemp("tiny-model"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_ID", str(model_dir))
        patch.setenv("DERMXAI_EXAMPLES_DIR", str(tmp_path_factory.mktemp("ex") / "examples"))
        app.load_examples.cache_clear()
        app._examples_by_digest.cache_clear()
        demo = app.build_demo()
        options = {**app.launch_options(), "max_file_size": f"{UPLOAD_CAP_MB}mb"}
        _, url, _ = demo.launch(
            server_name="127.0.0.1",
            server_port=_free_port(),
            prevent_thread_lock=True,
            quiet=True,
            **options,
        )
        try:
            yield url
        finally:
            demo.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One real server for the whole module."""
    with serve_tiny_model(tmp_path_factory) as url:
        yield url


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


def _client(url: str, downloads: Path) -> Client:
    return Client(url, verbose=False, download_files=str(downloads), analytics_enabled=False)


def _explain(client: Client, image: str, methods: list[str], layer: str) -> tuple:
    return client.predict(handle_file(image), methods, layer, api_name="/explain")


def _fingerprint(result: tuple) -> str:
    """Everything a request returns, overlay files by content, as one comparable string."""
    label, gallery, text, verdict, scores = result
    images = [(Path(item["image"]).read_bytes().hex(), item["caption"]) for item in gallery]
    return json.dumps([label, images, text, verdict, scores], sort_keys=True)


def test_explain_endpoint_returns_label_first_then_overlays_and_text(server, downloads):
    client = _client(server, downloads)
    example = app.load_examples()[0]
    label, gallery, text, verdict, scores = _explain(
        client, str(example.image), ALL_METHODS, "layer4"
    )
    assert {c["label"] for c in label["confidences"]} <= set(app.get_service().loaded.labels)
    assert label["label"] == label["confidences"][0]["label"]
    assert [item["caption"] for item in gallery] == ALL_METHODS
    assert all(Path(item["image"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for item in gallery)
    assert text.strip()
    assert "Prediction set" in verdict
    assert f"Ground truth: **{example.label}**" in scores


def test_compare_layers_endpoint(server, downloads):
    client = _client(server, downloads)
    example = app.load_examples()[1]
    gallery = client.predict(
        handle_file(str(example.image)), "Grad-CAM++", api_name="/compare_layers"
    )
    assert [item["caption"] for item in gallery] == [f"Grad-CAM++ @ {ly}" for ly in app.LAYERS]


def test_eight_concurrent_clients_equal_serial_results_byte_for_byte(server, downloads):
    examples = app.load_examples()
    jobs = [
        (str(examples[i % len(examples)].image), ALL_METHODS if i % 4 == 0 else ALL_METHODS[:2], ly)
        for i, ly in enumerate(["layer4", "layer3", "layer2", "layer4"] * 2)
    ]
    serial_client = _client(server, downloads / "serial")
    serial = [_fingerprint(_explain(serial_client, *job)) for job in jobs]

    def run(index: int) -> str:
        client = _client(server, downloads / f"client{index}")
        return _fingerprint(_explain(client, *jobs[index]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(run, range(8)))
    assert concurrent == serial


@pytest.mark.parametrize("name", list(bad_uploads()))
def test_bad_upload_gets_a_clear_error_and_the_server_stays_up(server, downloads, tmp_path, name):
    data, expected = bad_uploads()[name]
    path = tmp_path / name
    path.write_bytes(data)
    client = _client(server, downloads)
    with pytest.raises(AppError) as info:
        _explain(client, str(path), ["Grad-CAM"], "layer4")
    assert expected in str(info.value).lower()
    example = app.load_examples()[0]
    assert _explain(client, str(example.image), ["Grad-CAM"], "layer4")[2]


@pytest.mark.parametrize(
    "name", ["cmyk.jpg", "sixteen_bit.png", "animated.gif", "exif_rotated.jpg"]
)
def test_unusual_upload_is_explained(server, downloads, tmp_path, name):
    data, _ = odd_uploads()[name]
    path = tmp_path / name
    path.write_bytes(data)
    _, gallery, text, _, _ = _explain(_client(server, downloads), str(path), ["Grad-CAM"], "layer4")
    assert len(gallery) == 1 and text


@pytest.mark.parametrize(
    ("methods", "layer", "match"),
    [([], "layer4", "No method selected"), (["Grad-CAM"], "layer7", "Unknown layer 'layer7'")],
)
def test_bad_options_get_a_clear_error(server, downloads, methods, layer, match):
    example = app.load_examples()[0]
    with pytest.raises(AppError, match=match):
        _explain(_client(server, downloads), str(example.image), methods, layer)


def test_upload_over_the_cap_is_refused(server, downloads, tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"\0" * (UPLOAD_CAP_MB * 2**20 + 1))
    with pytest.raises(Exception, match=r"(?i)maximum allowed size|too large|exceeds"):
        _explain(_client(server, downloads), str(path), ["Grad-CAM"], "layer4")
