"""The page: Generate (streamed, then waveform, spectrogram, seed and a wav to download), Codec (a round trip
at a chosen bitrate, with spectrograms, the codes and their usage) and About (the models).

Each handler checks its inputs with `limits`, runs under its model's lock (gradio's queue already runs one
request per event at a time), and turns the project's errors (ValueErrors that speak to the user) into
`gr.Error`, so the page shows a message, never a traceback.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import soundfile as sf
import torch

from ..generate import generate_stream, task_top_k
from . import limits, plots
from .models import Models, about_markdown

log = logging.getLogger(__name__)
STREAM_SECONDS = 0.5  # audio per streamed piece: short enough to start soon, long enough to stay ahead


def page_errors(gr) -> Callable:
    """Decorator: a ValueError becomes gr.Error with its text; anything else a short gr.Error (logged in full)."""

    def wrap(handler):
        @functools.wraps(handler)
        def run(*args, **kwargs):
            try:
                result = handler(*args, **kwargs)
                if isinstance(result, Iterator):
                    yield from result
                else:
                    yield result
            except gr.Error:
                raise
            except (ValueError, OSError) as exc:
                raise gr.Error(str(exc), print_exception=False) from None
            except Exception as exc:
                log.exception("request failed")
                raise gr.Error(f"Something went wrong on the server ({type(exc).__name__}); see its log.",
                               print_exception=False) from None
        return run
    return wrap


def wav_bytes(wav: torch.Tensor, sample_rate: int) -> bytes:
    """FloatTensor[C, n] as a 16-bit PCM wav file in memory (a piece of the streamed audio)."""
    buffer = io.BytesIO()
    sf.write(buffer, wav.clamp(-1, 1).T.numpy(), sample_rate, format="WAV", subtype="PCM_16")  # soundfile: [n, C]
    return buffer.getvalue()


def write_wav(wav: torch.Tensor, sample_rate: int, folder: Path, stem: str) -> str:
    """Write FloatTensor[C, N] as 16-bit wav in `folder`; returns its path (gradio serves it from there)."""
    fd, path = tempfile.mkstemp(dir=folder, prefix=f"{stem}-", suffix=".wav")
    os.close(fd)
    sf.write(path, wav.clamp(-1, 1).T.numpy(), sample_rate, subtype="PCM_16")
    return path


def build_app(models: Models, workdir: str | os.PathLike):
    """The gradio Blocks of the page for `models`; files it makes go to `workdir`."""
    import gradio as gr

    workdir = Path(workdir)
    tasks = list(models.lms)
    voice_list, voice_default = models.voices()
    codec = models.codec
    guard = page_errors(gr)

    @guard
    def generate(task, prompt, voice, duration, seed, temperature, top_k, top_p, guidance, audio_prompt):
        if task not in models.lms:
            raise limits.LimitError(f"No {task} LM is loaded; pick one of {tasks}.")
        prompt, duration = limits.check_prompt(prompt), limits.check_duration(duration)
        lm = models.lms[task]
        context = None
        if audio_prompt is not None:
            context = limits.load_upload(audio_prompt, lm.codec.sample_rate, lm.codec.channels, "the audio prompt")
        with models.locks[task]:
            stream = generate_stream(
                prompt, task=task, model=lm, duration=duration, seed=limits.check_seed(seed),
                temperature=temperature, top_k=limits.check_top_k(top_k), top_p=top_p, guidance_scale=guidance,
                voice=(voice or None) if task == "speech" else None, audio_prompt=context, progress=False,
                chunk_frames=max(1, round(STREAM_SECONDS * lm.config.frame_rate)))
            pieces = []
            for piece in stream:
                pieces.append(piece)
                yield {live: wav_bytes(piece, stream.sample_rate)}
        wav = torch.cat(pieces, dim=-1) if pieces else torch.zeros(stream.channels, 0)
        path = write_wav(wav, stream.sample_rate, workdir, "generated")
        ended = " (the LM ended it)" if stream.ended_by_itself else ""
        yield {result: path, download: path, wave: plots.waveform_image(wav),
               spectrogram: plots.mel_image(wav, stream.sample_rate),
               info: f"Seed **{stream.seed}** · {wav.shape[-1] / stream.sample_rate:.2f} s at "
                     f"{stream.sample_rate} Hz{ended}"}

    @guard
    def round_trip(upload, k):
        k = int(k)
        original = limits.load_upload(upload, codec.sample_rate, codec.channels)
        with models.locks["codec"], torch.inference_mode():
            codes = codec.encode(original[None], num_codebooks=k)  # (1, k, T)
            rebuilt = codec.decode(codes)[0, :, :original.shape[-1]].cpu()  # (C, N)
        sr = codec.sample_rate
        usage = ["| level | codes used | perplexity |", "| ---: | ---: | ---: |"]
        usage += [f"| {level} | {used} / {codec.codebook_size} | {ppl:.1f} |"
                  for level, used, ppl in plots.codebook_usage(codes[0], codec.codebook_size)]
        return (write_wav(original, sr, workdir, "original"), write_wav(rebuilt, sr, workdir, "reconstruction"),
                plots.mel_image(original, sr), plots.mel_image(rebuilt, sr),
                plots.codes_image(codes[0], codec.codebook_size),
                f"{k} codebooks × {codes.shape[-1]} frames = {codec.bitrate(k):g} kbps\n\n" + "\n".join(usage))

    def bitrate_text(k) -> str:
        return f"**{codec.bitrate(int(k)):g} kbps** ({int(k)} of {codec.num_codebooks} codebooks)"

    with gr.Blocks(title="rvqaudio", analytics_enabled=False) as app:
        gr.Markdown("# rvqaudio\nGenerate music and speech with the LMs, or hear audio through the codec.")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    task_box = gr.Radio(tasks, value=tasks[0], label="Task", elem_id="task")
                    prompt_box = gr.Textbox(label=f"Prompt (at most {limits.MAX_PROMPT_CHARS} characters)",
                                            value="a calm piano melody at 96 bpm", lines=2, elem_id="prompt")
                    voice_box = gr.Dropdown(voice_list, value=voice_default, label="Voice (speech)",
                                            visible=tasks[0] == "speech", elem_id="voice")
                    duration_box = gr.Slider(0.5, limits.MAX_DURATION, value=5.0, step=0.5, label="Duration (s)",
                                             elem_id="duration")
                    seed_box = gr.Number(-1, precision=0, label="Seed (-1: random)", elem_id="seed")
                    with gr.Accordion("Sampling", open=False):
                        temperature_box = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature")
                        top_k_box = gr.Number(task_top_k(tasks[0]), precision=0, label="Top-k (0: off)")
                        top_p_box = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
                        guidance_box = gr.Slider(1.0, 6.0, value=3.0, step=0.25, label="Guidance scale")
                    prompt_audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                            label="Audio prompt to continue (optional)", elem_id="audio-prompt")
                    go = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column():
                    live = gr.Audio(label="Playing as it is generated", streaming=True, autoplay=True,
                                    interactive=False, elem_id="live")
                    result = gr.Audio(label="Generated", type="filepath", interactive=False, elem_id="result")
                    info = gr.Markdown(elem_id="seed-used")
                    wave = gr.Image(label="Waveform", type="pil", format="png", interactive=False, elem_id="wave")
                    spectrogram = gr.Image(label="Mel spectrogram", type="pil", format="png", interactive=False,
                                           elem_id="spectrogram")
                    download = gr.DownloadButton("Download (wav)", elem_id="download")
            task_box.change(lambda t: gr.update(visible=t == "speech"), task_box, voice_box)
            task_box.change(lambda t: gr.update(value=task_top_k(t)), task_box, top_k_box)  # each task's default
            go.click(generate, [task_box, prompt_box, voice_box, duration_box, seed_box, temperature_box, top_k_box,
                                top_p_box, guidance_box, prompt_audio],
                     [live, result, download, wave, spectrogram, info], concurrency_limit=1,
                     concurrency_id="generate")
        with gr.Tab("Codec"):
            with gr.Row():
                with gr.Column():
                    upload = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                      label=f"Audio (at most {limits.MAX_UPLOAD_SECONDS:g} s, "
                                            f"{limits.MAX_UPLOAD_MB} MB)", elem_id="codec-input")
                    k_box = gr.Slider(1, codec.num_codebooks, value=codec.num_codebooks, step=1,
                                      label="Codebooks", elem_id="codebooks")
                    rate = gr.Markdown(bitrate_text(codec.num_codebooks), elem_id="bitrate")
                    encode = gr.Button("Encode and decode", variant="primary", elem_id="round-trip")
                with gr.Column():
                    with gr.Row():
                        original_out = gr.Audio(label="Original", type="filepath", interactive=False,
                                                elem_id="original")
                        rebuilt_out = gr.Audio(label="Reconstruction", type="filepath", interactive=False,
                                               elem_id="reconstruction")
                    original_mel = gr.Image(label="Original: mel spectrogram", format="png", interactive=False)
                    rebuilt_mel = gr.Image(label="Reconstruction: mel spectrogram", format="png", interactive=False)
                    codes_out = gr.Image(label="Codes (codebook 1 at the top × frames)", format="png",
                                         interactive=False, elem_id="codes")
                    usage_out = gr.Markdown(elem_id="usage")
            k_box.change(bitrate_text, k_box, rate)
            encode.click(round_trip, [upload, k_box],
                         [original_out, rebuilt_out, original_mel, rebuilt_mel, codes_out, usage_out],
                         concurrency_limit=1, concurrency_id="codec")
        with gr.Tab("About"):
            gr.Markdown(about_markdown(models))
    return app
