"""`make demo`: the main job with the bundled defaults.

rvqaudio does not ship a trained codec yet, so for now the demo shows the codec end to end on a machine with
nothing downloaded: it speaks a sentence with espeak-ng, trains `configs/codec_tiny.json` on it for a few
hundred steps (a few minutes on 2 cores) with `train_codec`, encodes the clip to a codes file with
`encode_file`, decodes it back with `decode_file`, and reports bitrate and reconstruction quality.
When a codec is bundled it is used instead of training one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from tokenizer import CodecConfig, RVQCodec
from tokenizer.audio import load_audio

from .codec_files import decode_file, encode_file, read_codes
from .defaults import DEFAULT_CODEC_DIR
from .evaluation.metrics import mel_distance

REPO = Path(__file__).resolve().parent.parent
SENTENCE = "rvqaudio turns audio into tokens, and tokens back into audio."


def speak(text: str, out: Path) -> Path:
    """Synthesize `text` with espeak-ng into `out` (wav)."""
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed; run `make setup` (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out), text], check=True)
    return out


def run_demo(out: Path, steps: int = 300) -> None:
    out.mkdir(parents=True, exist_ok=True)
    clip = speak(SENTENCE, out / "speech.wav")

    if (DEFAULT_CODEC_DIR / "model.safetensors").is_file():
        codec_dir = DEFAULT_CODEC_DIR
        print(f"using the bundled codec in {codec_dir}")
    else:
        from tokenizer.training import train_codec

        print(f"no bundled codec yet: training configs/codec_tiny.json for {steps} steps on {clip.name}")
        with tempfile.TemporaryDirectory() as data:
            shutil.copy(clip, Path(data) / clip.name)
            shutil.rmtree(out / "codec-run", ignore_errors=True)
            codec_dir = train_codec(CodecConfig.from_json_file(REPO / "configs" / "codec_tiny.json"), data,
                                    out / "codec-run", max_steps=steps)
    codec = RVQCodec.from_pretrained(codec_dir)

    reference, _ = load_audio(clip, sample_rate=codec.sample_rate, channels=codec.channels)
    print(f"codec: {codec.sample_rate} Hz, {codec.frame_rate:g} frames/s, {codec.num_codebooks} codebooks x "
          f"{codec.codebook_size} codes")
    for k in range(1, codec.num_codebooks + 1):
        codes_path = encode_file(clip, out / f"speech_k{k}.npz", codec=codec, num_codebooks=k)
        wav_path = decode_file(codes_path, out / f"speech_k{k}.wav", codec=codec)
        codes, _ = read_codes(codes_path)
        decoded, _ = load_audio(wav_path)
        print(f"  {k} codebooks = {codec.bitrate(k):5.2f} kbps: codes {tuple(codes.shape)} -> {wav_path.name}, "
              f"mel distance {mel_distance(reference, decoded, codec.sample_rate):.3f} (0 = identical)")
    print(f"original: {clip}; decoded files and codes in {out}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "demo_output")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    run_demo(args.out, args.steps)


if __name__ == "__main__":
    main()
