"""`rvqaudio serve`: the page's limits and pictures, then the page itself in headless Chromium (Debian's chromium
and chromium-driver through Selenium): a streamed music generation of the asked duration with its spectrogram,
a codec round trip with its codes image, the messages for a too-long prompt and a corrupt upload, no connection
off this machine, and a screenshot of the page: in the test's temporary folder, or where RVQAUDIO_SCREENSHOT
says (the README's: `RVQAUDIO_SCREENSHOT=docs/images/serve.png pytest tests/pipelines/test_serve.py`)."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from lm import TextTokenizer
from pipelines.defaults import save_lm
from pipelines.serve import limits, plots  # plots needs PIL, which the demo extra (gradio) brings
from tokenizer import CodecConfig, RVQCodec

ROOT = Path(__file__).resolve().parents[2]
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,1500", "--autoplay-policy=no-user-gesture-required", "--mute-audio"]
SAMPLE_RATE = 8000  # the tiny codec's


def tiny_codec() -> RVQCodec:
    """8 kHz mono, 50 frames/s, 4 codebooks of 32 (as tests/pipelines/test_generate.py's)."""
    torch.manual_seed(0)
    config = CodecConfig(sample_rate=SAMPLE_RATE, n_filters=4, strides=(4, 5, 8), dimension=16, causal=True,
                         quantizer={"num_codebooks": 4, "codebook_size": 32})
    codec = RVQCodec(config)
    codec.train()(torch.randn(2, 1, 1600) * 0.1)  # k-means init
    return codec.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """A tiny codec folder and a tiny self-contained music LM folder (random weights; its end-of-audio row zeroed
    so that music plays its whole duration)."""
    from lm import AudioLM

    root = tmp_path_factory.mktemp("serve")
    codec = tiny_codec()
    codec.save_pretrained(root / "codec")
    text = TextTokenizer.train(["a calm piano melody", "hello world", "drums and bass", "good morning"] * 4,
                               vocab_size=300)
    torch.manual_seed(0)
    lm = AudioLM.from_config(ROOT / "configs/lm_tiny.json", text, codec)
    with torch.no_grad():
        lm.model.heads[0].weight[-1] = 0.0
    lm.model.eval()
    save_lm(lm, codec, root / "lm")
    return root


def write(path: Path, wav: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    sf.write(path, wav, rate, subtype=subtype)
    return path


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wav = 0.3 * np.sin(2 * np.pi * 220 * t)
    return np.stack([wav] * channels, axis=1) if channels > 1 else wav


# ----------------------------------------------------------------------------------------- limits and pictures


def test_limits_refuse_long_prompts_and_durations_with_a_message():
    assert limits.check_prompt("  a calm piano  ") == "a calm piano"
    with pytest.raises(limits.LimitError, match=r"301 characters long; this page takes at most 300"):
        limits.check_prompt("x" * 301)
    with pytest.raises(limits.LimitError, match="empty"):
        limits.check_prompt("   ")
    with pytest.raises(limits.LimitError, match="at most 30 s"):
        limits.check_duration(31)
    assert limits.check_seed(-1) is None and limits.check_seed(7) == 7
    assert limits.check_top_k(0) is None and limits.check_top_k(250) == 250


def test_uploads_in_odd_formats_load_and_bad_ones_get_a_message(tmp_path):
    eight_bit = limits.load_upload(write(tmp_path / "u8.wav", tone(0.5, 8000), 8000, "PCM_U8"), SAMPLE_RATE, 1)
    assert eight_bit.shape == (1, 4000) and eight_bit.abs().max() > 0.2
    stereo = limits.load_upload(write(tmp_path / "hi.wav", tone(0.5, 96000, 2), 96000), SAMPLE_RATE, 1)
    assert stereo.shape == (1, 4000)
    if shutil.which("ffmpeg"):
        mp3 = tmp_path / "a.mp3"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(write(tmp_path / "m.wav", tone(1.0, 16000), 16000)),
                        str(mp3)], check=True)
        assert abs(limits.load_upload(mp3, SAMPLE_RATE, 1).shape[-1] - 8000) < 1200  # mp3 pads a little
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(200))
    with pytest.raises(limits.LimitError, match=r"Could not read the uploaded audio 'corrupt.wav' as audio"):
        limits.load_upload(corrupt, SAMPLE_RATE, 1)
    long = write(tmp_path / "long.wav", np.zeros(int(61 * 8000)), 8000)
    with pytest.raises(limits.LimitError, match=r"lasts 61.0 s; this page takes at most 60 s"):
        limits.load_upload(long, SAMPLE_RATE, 1)
    with pytest.raises(limits.LimitError, match="upload or record"):
        limits.load_upload(None, SAMPLE_RATE, 1)


def test_pictures_have_the_page_size_and_codes_one_row_per_codebook():
    wav = torch.randn(1, 8000) * 0.1
    assert plots.waveform_image(wav).size == (plots.WIDTH, plots.HEIGHT)
    assert plots.mel_image(wav, 8000).size == (plots.WIDTH, plots.HEIGHT)
    assert plots.mel_image(torch.zeros(1, 10), 8000).size == (plots.WIDTH, plots.HEIGHT)  # shorter than a window
    codes = torch.randint(0, 32, (4, 50))
    assert plots.codes_image(codes, 32, row_height=10).size == (plots.WIDTH, 40)
    usage = plots.codebook_usage(torch.tensor([[0, 0, 1, 1], [3, 3, 3, 3]]), 32)
    assert usage[0][:2] == (1, 2) and abs(usage[0][2] - 2.0) < 1e-6 and usage[1][1:] == (1, 1.0)


# ----------------------------------------------------------------------------------------- the page in a browser

# Run in the server's process: record every connection or name lookup that leaves this machine.
_NETWORK_GUARD = """
import sys
log = open(sys.argv.pop(1), "a")
LOCAL = {"127.0.0.1", "::1", "localhost", "0.0.0.0", None}
def hook(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOCAL:
        log.write(f"connect {args[1]}\\n"); log.flush()
    elif event == "socket.getaddrinfo" and args[0] not in LOCAL:
        log.write(f"lookup {args[0]}\\n"); log.flush()
sys.addaudithook(hook)
from pipelines.cli import main
sys.exit(main())
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(folders, tmp_path_factory):
    """`rvqaudio serve` with the tiny models on a free local port, in a subprocess stopped at the end."""
    port, logs = free_port(), tmp_path_factory.mktemp("server")
    network, output = logs / "network.log", (logs / "server.log").open("w")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_TEMP_DIR": str(logs / "gradio")}
    process = subprocess.Popen(
        [sys.executable, "-c", _NETWORK_GUARD, str(network), "serve", "--port", str(port),
         "--model-music", str(folders / "lm"), "--codec", str(folders / "codec")],
        cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"rvqaudio serve exited with {process.returncode}:\n{(logs / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rvqaudio serve did not answer at {url} in 90 s:\n{(logs / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url, network, logs / "server.log"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Debian Chromium through Selenium; the test fails (never skips) when it cannot start."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[test]'")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install chromium chromium-driver (make setup installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*CHROME_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:
        pytest.fail(f"could not start headless Chromium ({chromium}) with {driver_path}: {exc}")
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what: str, timeout: float = 60):
    """Poll `condition(driver)` until it is truthy; fail naming `what` and the page's text otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
        except Exception:
            value = None
        if value:
            return value
        time.sleep(0.2)
    body = driver.find_element("css selector", "body").text
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}; the page says:\n{body[:2000]}")


# The loaded <audio> of a component: gradio's player keeps it in the waveform view's shadow root.
_MEDIA_DURATION = """
const root = document.querySelector(arguments[0]);
if (!root) return null;
const players = [...root.querySelectorAll('audio')];
root.querySelectorAll('*').forEach(e => { if (e.shadowRoot) players.push(...e.shadowRoot.querySelectorAll('audio')); });
const ready = players.find(a => a.src && a.readyState >= 1 && isFinite(a.duration) && a.duration > 0);
return ready ? ready.duration : null;
"""


def media_duration(driver, selector: str) -> float | None:
    """Seconds of the playable audio in the component at `selector` (None until one has loaded)."""
    return driver.execute_script(_MEDIA_DURATION, selector)


def image_loaded(driver, selector: str) -> bool:
    return bool(driver.execute_script(
        "const i = document.querySelector(arguments[0]); return i && i.complete && i.naturalWidth > 0;", selector))


def set_number(driver, selector: str, value: str) -> None:
    box = driver.find_element("css selector", selector)
    box.clear()
    box.send_keys(value)
    box.send_keys("\t")


def open_tab(driver, name: str) -> None:
    for tab in driver.find_elements("css selector", "button[role=tab]"):
        if tab.text.strip() == name:
            tab.click()
            return
    pytest.fail(f"no tab {name!r} on the page")


def show_message(driver, text: str) -> str:
    return wait_for(driver, lambda d: text in d.find_element("css selector", "body").text and text,
                    f"the message {text!r}", timeout=30)


def close_messages(driver) -> None:
    driver.execute_script("document.querySelectorAll('.toast-close').forEach(b => b.click());")


@pytest.mark.slow
def test_the_page_generates_round_trips_and_shows_errors_in_a_browser(server, browser, tmp_path):
    url, network, server_log = server
    driver = browser
    driver.get(url)
    wait_for(driver, lambda d: d.find_elements("css selector", "#generate"), "the page to load")

    # Generate: 2 s of music with the tiny LM, streamed, then the whole clip with its pictures and seed.
    set_number(driver, "#duration input[type=number]", "2")
    set_number(driver, "#seed input", "7")
    driver.find_element("css selector", "#generate").click()
    seconds = wait_for(driver, lambda d: media_duration(d, "#result"), "the generated audio", timeout=90)
    assert abs(seconds - 2.0) < 0.05, f"the generated audio lasts {seconds} s, not the 2 s asked for"
    wait_for(driver, lambda d: image_loaded(d, "#spectrogram img"), "the spectrogram image")
    wait_for(driver, lambda d: image_loaded(d, "#wave img"), "the waveform image")
    assert "Seed 7" in driver.find_element("css selector", "#seed-used").text
    # The streamed player's length grows as its pieces arrive: wait until it holds all 2 s (AAC pads a little).
    wait_for(driver, lambda d: (media_duration(d, "#live") or 0) >= 2.0 - 0.05, "the whole streamed audio (2 s)")
    driver.execute_script("window.scrollTo(0, 0)")
    save_screenshot(driver, Path(os.environ.get("RVQAUDIO_SCREENSHOT") or tmp_path / "serve.png"))

    # A prompt over the limit: a message on the page, not a traceback.
    prompt = driver.find_element("css selector", "#prompt textarea")
    prompt.clear()
    prompt.send_keys("x" * (limits.MAX_PROMPT_CHARS + 20))
    driver.find_element("css selector", "#generate").click()
    show_message(driver, f"this page takes at most {limits.MAX_PROMPT_CHARS}")
    close_messages(driver)

    # Codec: a wav through the codec at 2 of 4 codebooks.
    open_tab(driver, "Codec")
    clip = write(tmp_path / "speech.wav", tone(1.5, 16000), 16000)
    upload = wait_for(driver, lambda d: d.find_element("css selector", "#codec-input input[type=file]"),
                      "the codec's upload box")
    upload.send_keys(str(clip))
    wait_for(driver, lambda d: d.find_elements("css selector", "#codec-input audio"), "the uploaded audio")
    set_number(driver, "#codebooks input[type=number]", "2")
    # 2 codebooks of 32 codes (5 bits) at 50 frames/s: 0.5 kbps.
    wait_for(driver, lambda d: "0.5 kbps" in d.find_element("css selector", "#bitrate").text, "the bitrate 0.5 kbps")
    driver.find_element("css selector", "#round-trip").click()
    rebuilt = wait_for(driver, lambda d: media_duration(d, "#reconstruction"), "the reconstruction")
    assert abs(rebuilt - 1.5) < 0.05, f"the reconstruction lasts {rebuilt} s, not the input's 1.5 s"
    assert abs(wait_for(driver, lambda d: media_duration(d, "#original"), "the original") - 1.5) < 0.05
    wait_for(driver, lambda d: image_loaded(d, "#codes img"), "the codes image")
    assert "2 codebooks" in driver.find_element("css selector", "#usage").text

    # A corrupt upload: a message on the page.
    driver.execute_script("document.querySelector('#codec-input button[aria-label=Clear]')?.click()")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + os.urandom(400))
    wait_for(driver, lambda d: d.find_element("css selector", "#codec-input input[type=file]"),
             "the emptied upload box").send_keys(str(corrupt))
    time.sleep(1)
    driver.find_element("css selector", "#round-trip").click()
    show_message(driver, "Could not read the uploaded audio 'corrupt.wav' as audio")

    assert "Traceback" not in driver.find_element("css selector", "body").text

    # Two requests at once (one continuing an uploaded clip): the queue runs them one after the other, both whole.
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    settings = dict(task="music", prompt="a calm piano melody", voice=None, duration=1.0, seed=3, temperature=1.0,
                    top_k=250, top_p=1.0, guidance=3.0)
    jobs = [client.submit(**settings, audio_prompt=prompt, api_name="/generate")
            for prompt in (None, handle_file(str(clip)))]
    for job in jobs:
        wav, rate = sf.read(job.result(timeout=60)[1])
        assert rate == SAMPLE_RATE and len(wav) == SAMPLE_RATE, f"a queued generation gave {len(wav)} samples"
    leaks = network.read_text() if network.exists() else ""
    assert not leaks, f"the server tried to reach the network:\n{leaks}"


def save_screenshot(driver, path: Path) -> None:
    """The page as a palette PNG (small enough to commit), written atomically."""
    from PIL import Image

    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    image = image.quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".png", delete=False) as tmp:
        image.save(tmp, format="PNG", optimize=True)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
    assert path.stat().st_size < 300_000, f"{path} is {path.stat().st_size} bytes"
