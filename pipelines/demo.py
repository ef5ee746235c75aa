"""`make demo`: the main job with the bundled defaults, on a machine with nothing downloaded.

1. `rvqaudio generate "a calm piano melody" -o melody.wav` (music, the bundled music LM and codec);
2. the bundled speech LM speaking "Hello, how are you today?" in its default voice (speech);
3. the bundled codec round-tripping a sentence spoken by espeak-ng at every bitrate it offers, with the
   reconstruction's mel distance.

Everything is written to `--out` (default demo_output/).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from tokenizer.audio import load_audio

from .codec_files import decode_file, encode_file
from .defaults import default_codec, default_decoder_variants
from .evaluation.metrics import mel_distance
from .generate import generate

REPO = Path(__file__).resolve().parent.parent
CAPTION = "a calm piano melody"
SENTENCE = "Hello, how are you today?"
CODEC_SENTENCE = "rvqaudio turns audio into tokens, and tokens back into audio."


def speak(text: str, out: Path) -> Path:
    """Synthesize `text` with espeak-ng into `out` (wav)."""
    if shutil.which("espeak-ng") is None:
        raise FileNotFoundError("espeak-ng is not installed; run `make setup` (apt-get install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out), text], check=True)
    return out


def run_demo(out: Path, duration: float = 5.0, seed: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for prompt, task, name in ((CAPTION, "music", "melody.wav"), (SENTENCE, "speech", "hello.wav")):
        clip = generate(prompt, task=task, duration=duration, seed=seed)
        path = clip.save(out / name)
        how = "ended by itself" if clip.ended_by_itself else "full length"
        voice = f", voice {clip.voice}" if clip.voice else ""
        print(f"generate({prompt!r}, task={task!r}) -> {path} ({clip.duration:.2f} s, {how}{voice}, seed {seed})")

    codec = default_codec("speech")  # with the decoder speech decodes with
    decoder = "its speech decoder" if "speech" in default_decoder_variants() else "its decoder"
    original = speak(CODEC_SENTENCE, out / "speech.wav")
    reference, _ = load_audio(original, sample_rate=codec.sample_rate, channels=codec.channels)
    print(f"bundled codec: {codec.sample_rate} Hz, {codec.frame_rate:g} frames/s, {codec.num_codebooks} codebooks x "
          f"{codec.codebook_size} codes; round trip of {original.name} through {decoder}:")
    for k in range(1, codec.num_codebooks + 1):
        wav_path = decode_file(encode_file(original, out / f"speech_k{k}.npz", codec=codec, num_codebooks=k),
                               out / f"speech_k{k}.wav", codec=codec)
        decoded, _ = load_audio(wav_path)
        print(f"  {k} codebooks = {codec.bitrate(k):5.2f} kbps -> {wav_path.name}, "
              f"mel distance {mel_distance(reference, decoded, codec.sample_rate):.3f} (0 = identical)")
    print(f"all files in {out}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "demo_output")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of music (and of speech at most)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run_demo(args.out, args.duration, args.seed)


if __name__ == "__main__":
    main()
