"""The `rvqaudio` command: each subcommand calls one public function with the same arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence


_VARIANT_HELP = ("decode with this decoder variant of the codec folder, e.g. speech (the bundled codec's speech "
                 "decoder, which generate uses for task=speech); default: the codec's own decoder")
_DECODE_VARIANT_HELP = ("decode with this decoder variant of the codec folder, e.g. speech, or 'own' for its own "
                        "decoder; default: the folder's decoder choice picks one from the codes (the bundled codec: "
                        "its speech decoder for speech, its own decoder for music), else its own decoder")


def _require(extra: str, command: str) -> None:
    """Fail before any work when the command's optional dependencies are missing."""
    from tokenizer.extras import require_extra

    require_extra(extra, command)


def _encode(args: argparse.Namespace) -> None:
    from tokenizer.level import CodecLevel

    from .codec_files import encode_file

    if args.keep_level and args.level_dbfs is not None:
        raise SystemExit("rvqaudio encode: --keep-level and --level-dbfs exclude each other; give one")
    if args.keep_level:
        level = None
    else:
        level = CodecLevel() if args.level_dbfs is None else CodecLevel(target_dbfs=args.level_dbfs)
    out = encode_file(args.input, args.output, codec=args.codec, num_codebooks=args.num_codebooks,
                      strict=args.strict, level=level)
    print(f"wrote {out}")


def _decode(args: argparse.Namespace) -> None:
    from .codec_files import decode_file

    out = decode_file(args.input, args.output, codec=args.codec, variant=args.variant)
    print(f"wrote {out}")


def _fit_decoder_choice(args: argparse.Namespace) -> None:
    from .decoder_choice import fit_decoder_choice

    result = fit_decoder_choice(args.codec, args.speech, args.music, speech_variant=args.variant,
                                window_seconds=args.window_seconds, max_clips=args.max_clips)
    for name, figures in result["test"].items():
        print(f"{name} ({figures['label']}): right on {figures['window_accuracy']:.3f} of {figures['windows']} "
              f"windows of {result['window_seconds']:g} s, {figures['clip_accuracy']:.3f} of {figures['clips']} clips")
    print(f"fitted with train clips at these input levels in turn: {', '.join(result['levels'])}")
    print(f"wrote the decoder choice into {args.codec}")


def _train_codec(args: argparse.Namespace) -> None:
    from tokenizer import CodecConfig
    from tokenizer.training import train_codec

    out = train_codec(CodecConfig.from_json_file(args.config), args.data, args.out,
                      max_steps=args.max_steps, resume=args.resume, init_from=args.init_from, seed=args.seed)
    print(f"saved the trained codec to {out}")


def _train_pitch_head(args: argparse.Namespace) -> None:
    from tokenizer.pitch_training import train_pitch_head

    out = train_pitch_head(args.codec, args.data, args.out, steps=args.steps, batch_size=args.batch_size,
                           progress=not args.no_progress)
    print(f"saved the pitch-phase codec to {out}")


def _average_decoders(args: argparse.Namespace) -> None:
    import torch

    from tokenizer.averaging import average_decoders

    out = average_decoders(args.folders).save_pretrained(args.output, dtype=torch.float16 if args.fp16 else None)
    print(f"wrote the mean of {len(args.folders)} decoders to {out}")


def _export_codec(args: argparse.Namespace) -> None:
    import torch

    from tokenizer.training import export_checkpoint

    out = export_checkpoint(args.run, args.output, dtype=torch.float16 if args.fp16 else None)
    print(f"wrote the codec of {args.run}/checkpoint to {out}")


def _export_onnx(args: argparse.Namespace) -> None:
    _require("export", "rvqaudio export")
    from tokenizer.export import export_onnx

    from .defaults import resolve_codec

    codec = None if args.codec == "default" else args.codec
    out = export_onnx(resolve_codec(codec, variant=args.variant), args.output)
    print(f"wrote {out}/encoder.onnx, decoder.onnx and onnx.json")


def _tokenize(args: argparse.Namespace) -> None:
    from .tokenize import tokenize_dataset

    dataset = tokenize_dataset(
        args.source, codec=args.codec, output=args.output, audio_column=args.audio_column,
        text_column=args.text_column, batch_size=args.batch_size, num_codebooks=args.num_codebooks,
        num_shards=args.num_shards, shard_index=args.shard_index, num_proc=args.num_proc,
        resume=not args.no_resume, progress=not args.no_progress, part_size=args.part_size)
    print(f"tokenized {len(dataset)} rows into {args.output} (report: {args.output}/tokenize_report.json)")


def _train_lm(args: argparse.Namespace) -> None:
    from .finetune import run_train_lm

    run_train_lm(args)


def _finetune(args: argparse.Namespace) -> None:
    from .finetune import run_finetune

    run_finetune(args)


def _eval_codec(args: argparse.Namespace) -> None:
    _require("eval", "rvqaudio eval-codec")
    from .evaluation import InputLevel, evaluate_codec

    level = None
    if args.level_dbfs is not None or args.clip_db is not None:
        level = InputLevel(level_dbfs=args.level_dbfs, clip_db=args.clip_db)
    codec_level = None
    if args.codec_level is not None:
        from tokenizer.level import CodecLevel

        codec_level = CodecLevel(target_dbfs=args.codec_level)
    report = evaluate_codec(args.data, codec=args.codec, variant=args.variant, split=args.split,
                            max_clips=args.max_clips, num_codebooks=args.num_codebooks, opus_kbps=args.opus_kbps,
                            output=args.output, domain=args.domain, by=args.by, asr=args.asr,
                            phase_oracle=args.phase_oracle, level=level,
                            codec_level=codec_level)
    print(report["markdown"])


def _compare_reports(args: argparse.Namespace) -> None:
    from .evaluation import compare_reports

    result = compare_reports(args.reports, systems=args.system, resamples=args.resamples,
                             confidence=args.confidence, seed=args.seed, by_group=args.by_group, output=args.output)
    print(result["markdown"])


def _train_music_classifier(args: argparse.Namespace) -> None:
    _require("data", "rvqaudio train-music-classifier")
    from .evaluation import train_family_classifier

    classifier = train_family_classifier(args.data, output=args.output, epochs=args.epochs, seed=args.seed)
    print(f"held-out family accuracy: {classifier.config.heldout['accuracy']:.3f}; saved to {args.output}")


def _add_sampling_args(p: argparse.ArgumentParser) -> None:
    """The sampling flags of the eval commands; each left out keeps generate's default."""
    p.add_argument("--temperature", type=float, default=None, help="default 1.0")
    p.add_argument("--top-k", type=int, default=None, help="default 50 for speech, 250 for music (1: greedy)")
    p.add_argument("--top-p", type=float, default=None, help="default 1.0 (off)")
    p.add_argument("--guidance-scale", type=float, default=None, help="classifier-free guidance, default 3.0 (1: none)")
    p.add_argument("--weights", choices=["int8", "float"], default=None,
                   help="how the LM multiplies on a CPU (default: generate's, int8; float: its stored weights)")


def _sampling(args: argparse.Namespace) -> dict[str, float | int]:
    """The sampling flags given on the command line, by `GenerationConfig` name."""
    given = {name: getattr(args, name) for name in ("temperature", "top_k", "top_p", "guidance_scale")}
    return {name: value for name, value in given.items() if value is not None}


def _eval_music(args: argparse.Namespace) -> None:
    _require("eval", "rvqaudio eval-music")
    _require("data", "rvqaudio eval-music")
    from .evaluation import evaluate_music_lm, evaluate_music_references, format_music_report

    sampling = _sampling(args)
    if args.references_only:
        if sampling:
            raise ValueError(f"--references-only generates nothing; leave out {sorted(sampling)}")
        from .defaults import resolve_codec

        codec = None if args.codec is None else resolve_codec(args.codec)
        report = evaluate_music_references(args.data, args.classifier, split=args.split, max_clips=args.max_clips,
                                           output=args.output, progress=not args.no_progress, codec=codec,
                                           opus_kbps=args.opus_kbps)
        print(format_music_report(report))
        return
    if args.codec is not None:
        raise ValueError("--codec goes with --references-only; with an LM the renders go through the LM's own codec")
    if args.opus_kbps is not None:
        raise ValueError("--opus-kbps goes with --references-only")
    report = evaluate_music_lm(args.data, args.classifier, model=args.model, split=args.split,
                               max_clips=args.max_clips, duration=args.duration, seed=args.seed,
                               batch_size=args.batch_size, sampling=sampling, output=args.output,
                               progress=not args.no_progress, weights=args.weights)
    print(report["markdown"])


def _eval_tts(args: argparse.Namespace) -> None:
    _require("eval", "rvqaudio eval-tts")
    from .evaluation import evaluate_tts_lm

    report = evaluate_tts_lm(args.data, model=args.model, voice=args.voice, voices=args.voices,
                             references=args.references, split=args.split,
                             max_clips=args.max_clips, seed=args.seed, batch_size=args.batch_size,
                             sampling=_sampling(args), output=args.output, progress=not args.no_progress,
                             weights=args.weights)
    print(report["markdown"])


def _data(args: argparse.Namespace) -> None:
    from .data import make_music_dataset, make_real_music_dataset, make_real_speech_dataset, make_speech_dataset

    options = {} if args.voice_set is None else {"voice_set": args.voice_set}  # else the recipe's default
    if options and args.kind != "speech":
        raise SystemExit("error: --voice-set is for speech datasets only")
    make = {"speech": make_speech_dataset, "music": make_music_dataset, "real-speech": make_real_speech_dataset,
            "real-music": make_real_music_dataset}[args.kind]
    dataset = make(args.output, hours=args.hours, seed=args.seed, sample_rate=args.sample_rate,
                   num_proc=args.num_proc, test_fraction=args.test_fraction, overwrite=args.overwrite, **options)
    sizes = ", ".join(f"{split}: {len(ds)} clips" for split, ds in dataset.items())
    print(f"wrote the {args.kind} dataset to {args.output} ({sizes}); recipe in {args.output}/recipe.json")


def _serve(args: argparse.Namespace) -> None:
    _require("demo", "rvqaudio serve")
    from .serve import serve

    serve(host=args.host, port=args.port, model_music=args.model_music, model_speech=args.model_speech,
          codec=args.codec)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvqaudio", description="Token-based generative audio.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("encode", help="encode an audio file to codes (.npz)")
    p.add_argument("input", help="audio file (wav, flac, ogg, mp3, opus, ...)")
    p.add_argument("-o", "--output", required=True, help="codes file to write (.npz)")
    p.add_argument("--codec", default=None, help="codec folder (default: the bundled codec)")
    p.add_argument("--num-codebooks", type=int, default=None, help="codebooks to keep (sets the bitrate)")
    p.add_argument("--strict", action="store_true",
                   help="refuse an input that decodes to less than its header states (truncated), instead of "
                        "encoding its readable part with a warning")
    p.add_argument("--level-dbfs", type=float, default=None, metavar="DB",
                   help="RMS level the file is brought to before encoding; the gain is stored in the codes file "
                        "and `decode` undoes it (default: -18, the level the bundled codec codes best)")
    p.add_argument("--keep-level", action="store_true",
                   help="encode the file at its own level (gain 1): the codes of `RVQCodec.encode` on it")
    p.set_defaults(func=_encode)

    p = sub.add_parser("fit-decoder-choice",
                       help="fit which decoder of a codec folder decodes given codes (speech variant or its own), "
                            "measured per dataset; `decode` then picks it itself")
    p.add_argument("--codec", required=True, help="codec folder with a decoder variant for speech")
    p.add_argument("--speech", required=True, nargs="+", help="speech datasets (`rvqaudio data speech/real-speech`)")
    p.add_argument("--music", required=True, nargs="+", help="music datasets (`rvqaudio data music/real-music`)")
    p.add_argument("--variant", default="speech", help="the variant chosen for speech (default: speech)")
    p.add_argument("--window-seconds", type=float, default=3.0, help="windows of codes fitted on (default 3 s)")
    p.add_argument("--max-clips", type=int, default=600, help="clips per dataset and split (default 600)")
    p.set_defaults(func=_fit_decoder_choice)

    p = sub.add_parser("decode", help="decode a codes file (.npz) to a wav file")
    p.add_argument("input", help="codes file written by `rvqaudio encode`")
    p.add_argument("-o", "--output", required=True, help="audio file to write (.wav or .flac)")
    p.add_argument("--codec", default=None, help="codec folder (default: the bundled codec)")
    p.add_argument("--variant", default=None, metavar="NAME", help=_DECODE_VARIANT_HELP)
    p.set_defaults(func=_decode)

    from .generate_cli import add_generate_arguments, add_voices_arguments, run_generate, run_voices

    p = sub.add_parser("generate", help="generate audio from text (music or speech)")
    add_generate_arguments(p)
    p.set_defaults(func=run_generate)

    p = sub.add_parser("voices", help="list the voices of an LM")
    add_voices_arguments(p)
    p.set_defaults(func=run_voices)

    p = sub.add_parser("serve", help="a local web page: generate, listen, and round-trip audio through the codec "
                                     "(needs the demo extra)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model-music", default=None, metavar="DIR", help="music LM folder (default: the bundled one)")
    p.add_argument("--model-speech", default=None, metavar="DIR", help="speech LM folder (default: the bundled one)")
    p.add_argument("--codec", default=None, metavar="DIR", help="codec folder of the Codec tab (default: bundled)")
    p.set_defaults(func=_serve)

    from .finetune import add_eval_lm_arguments, add_finetune_arguments, add_train_lm_arguments, run_eval_lm

    p = sub.add_parser("train-lm", help="train a text tokenizer and an LM from scratch on a tokenized dataset")
    add_train_lm_arguments(p)
    p.set_defaults(func=_train_lm)

    p = sub.add_parser("finetune", help="continue training an LM folder on a tokenized dataset")
    add_finetune_arguments(p)
    p.set_defaults(func=_finetune)

    p = sub.add_parser("eval-lm", help="held-out loss and text gain (how much the LM uses its text) of a trained LM")
    add_eval_lm_arguments(p)
    p.set_defaults(func=run_eval_lm)

    p = sub.add_parser("tokenize", help="encode an audio dataset or folder to a dataset of codes")
    p.add_argument("source", help="saved dataset, audiofolder, or folder of audio files (+ metadata.csv/jsonl)")
    p.add_argument("-o", "--output", required=True, help="output folder (shards, report)")
    p.add_argument("--codec", default=None, help="codec folder (default: the bundled codec)")
    p.add_argument("--audio-column", default=None, help="default: the first Audio column")
    p.add_argument("--text-column", default=None, help="default: text, transcript, caption or sentence")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-codebooks", type=int, default=None, help="codebooks to keep (default: all)")
    p.add_argument("--num-shards", type=int, default=1, help="split the work across this many processes/machines")
    p.add_argument("--shard-index", type=int, default=None, help="this process's shard (default: from torchrun)")
    p.add_argument("--num-proc", type=int, default=1, help="worker processes on this machine")
    p.add_argument("--part-size", type=int, default=1000, help="rows per resumable part")
    p.add_argument("--no-resume", action="store_true", help="redo parts that are already finished")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_tokenize)

    p = sub.add_parser("data", help="synthesize a captioned speech or music dataset, or build one from the real "
                                    "recordings in Debian packages (offline, deterministic)")
    p.add_argument("kind", choices=["speech", "music", "real-speech", "real-music"])
    p.add_argument("--hours", type=float, required=True,
                   help="hours of audio to make (real-*: at most what the packages hold, about 2 and 3.5)")
    p.add_argument("-o", "--output", required=True, help="folder for the dataset (save_to_disk layout)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-rate", type=int, default=24000)
    p.add_argument("--num-proc", type=int, default=1, help="worker processes")
    p.add_argument("--test-fraction", type=float, default=0.1, help="share of clips in the held-out split")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--voice-set", choices=["english", "extra", "extra2"], default=None,
                   help="speech: the English voices (default), or festival's voices of other languages reading the "
                        "same sentences (more speakers for a codec's decoder; needs their Debian packages): "
                        "'extra' (nine, two held out) or 'extra2' (three more, none held out)")
    p.set_defaults(func=_data)

    p = sub.add_parser("eval-codec", help="codec vs Opus on a held-out split: mel, STFT, SI-SDR, PESQ, STOI")
    p.add_argument("--data", required=True, help="dataset folder written by `rvqaudio data`")
    p.add_argument("--codec", default=None, help="codec folder (default: the bundled codec)")
    p.add_argument("--variant", default=None, metavar="NAME",
                   help=_VARIANT_HELP + "; auto: per clip, the decoder the folder's decoder choice picks from the "
                        "codes, as `rvqaudio decode` does")
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--num-codebooks", type=int, nargs="+", default=None, help="bitrates to test (default: every k)")
    p.add_argument("--opus-kbps", type=float, nargs="*", default=[6.0, 12.0])
    p.add_argument("--domain", choices=["speech", "music"], default=None, help="default: speech if it has voices")
    p.add_argument("--by", default=None, metavar="COLUMN",
                   help="also break the figures down by this column of the split, e.g. voice, engine or family")
    p.add_argument("--asr", action="store_true",
                   help="speech: also the WER and words found of pocketsphinx on every system's output and on the "
                        "reference (intelligibility; about 5x real time per system)")
    p.add_argument("--phase-oracle", action="store_true",
                   help="also score the codec's output (largest k) with the reference's STFT phase, and the "
                        "reference with the codec's phase: does the codec lose more in magnitude or in phase?")
    p.add_argument("--level-dbfs", type=float, default=None, metavar="DB",
                   help="bring every clip to this RMS level in dBFS (e.g. -30, -20, -10) before coding: how the "
                        "systems fare on quiet or loud files (default: the clips' own level)")
    p.add_argument("--clip-db", type=float, default=None, metavar="DB",
                   help="then add this gain in dB and clip at full scale: how they fare on clipped files")
    p.add_argument("--codec-level", type=float, default=None, metavar="DB",
                   help="the codec codes each clip brought to this RMS level in dBFS and its output is brought back, "
                        "as `rvqaudio encode` (-18) and `decode` do (default: the codec codes the clip as it is)")
    p.add_argument("-o", "--output", default=None, help="report.json (a .md table is written beside it)")
    p.set_defaults(func=_eval_codec)

    p = sub.add_parser("compare-reports",
                       help="paired differences of two eval reports on the same clips, with bootstrap intervals")
    p.add_argument("reports", nargs="+", metavar="BASE NEW",
                   help="an eval-codec report and another on the same --data, --split, --max-clips; or eval-tts / "
                        "eval-music reports as base, new pairs, one pair per seed (pooled)")
    p.add_argument("--system", nargs="+", default=None,
                   help='systems to compare, e.g. "codec k=8" (default: every system in both reports)')
    p.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples over clips")
    p.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals")
    p.add_argument("--seed", type=int, default=0, help="resampling seed")
    p.add_argument("--by-group", action="store_true",
                   help="eval-codec reports made with the same --by COLUMN: also compare each value's clips (e.g. per "
                        "voice)")
    p.add_argument("-o", "--output", default=None, help="comparison.json (a .md table is written beside it)")
    p.set_defaults(func=_compare_reports)

    p = sub.add_parser("train-music-classifier", help="instrument-family classifier on rendered clips (for eval-music)")
    p.add_argument("--data", required=True, help="music dataset folder written by `rvqaudio data music`")
    p.add_argument("-o", "--output", required=True, help="classifier folder")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_music_classifier)

    p = sub.add_parser(
        "eval-music", help="caption adherence (family, tempo) and Frechet distance of generated music",
        description="Generate a clip for each held-out caption with the LM of --model (default: the bundled music LM) "
                    "and score it: instrument family by the classifier, tempo against the caption's, and the "
                    "Frechet distance to the held-out renders; the renders' own figures are reported beside, and "
                    "those of the renders after a round trip through the LM's codec (what any LM on its codes can "
                    "reach). "
                    "--references-only scores the renders alone and generates nothing.")
    p.add_argument("--data", required=True, help="music dataset folder written by `rvqaudio data music`")
    p.add_argument("--classifier", required=True, help="folder written by train-music-classifier")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default=None, help="self-contained LM folder (default: the bundled music LM)")
    which.add_argument("--references-only", action="store_true",
                       help="score only the held-out renders (no LM, no generation)")
    p.add_argument("--codec", default=None,
                   help="with --references-only: also score the renders after a round trip through this codec folder")
    p.add_argument("--opus-kbps", type=float, default=None,
                   help="with --references-only: also score the renders after a round trip through Opus (ffmpeg's "
                        "libopus) at this bitrate, e.g. 6 beside the codec's 6 kbps")
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=None, help="first N held-out clips (at least 4)")
    p.add_argument("--duration", type=float, default=8.0, help="seconds generated per caption (default 8)")
    p.add_argument("--seed", type=int, default=0, help="batch b is generated with seed + b (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="captions generated at once")
    p.add_argument("-o", "--output", default=None, help="report.json (a .md table is written beside it)")
    _add_sampling_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_eval_music)

    p = sub.add_parser(
        "eval-tts", help="intelligibility (pocketsphinx WER) of generated speech and whether it ends by itself",
        description="Speak each held-out sentence with the LM and transcribe it with pocketsphinx; report its "
                    "WER next to the same recogniser's WER on the dataset's reference synthesis, and the share "
                    "of generations that end by themselves within 2x the reference's duration (the longest each "
                    "may run). The held-out voices are ones the LM did not train on, so every sentence is "
                    "spoken with --voice or the LM's default voice.")
    p.add_argument("--data", required=True, help="speech dataset folder written by `rvqaudio data speech`")
    p.add_argument("--model", default=None, help="self-contained LM folder (default: the bundled speech LM)")
    p.add_argument("--voice", default=None, help="a voice of the LM (see `rvqaudio voices`; default: its default)")
    p.add_argument("--voices", default=None,
                   help="report per voice instead: comma-separated voices of the LM, or all, flite, festival, espeak, "
                        "flite-festival; each speaks the held-out sentences it reads in --data, next to its reference "
                        "and the reference through the LM's codec; pooled: the mean of per-voice ratios")
    p.add_argument("--references", choices=("dataset", "synthesize"), default="dataset",
                   help="with --voices: the references are the voice's rows of --data (dataset), or each voice reads "
                        "the split's first --max-clips sentences, synthesized now (synthesize: for the LM's own "
                        "voices)")
    p.add_argument("--split", default="test")
    p.add_argument("--max-clips", type=int, default=None, help="first N held-out sentences (with --voices: per voice)")
    p.add_argument("--seed", type=int, default=0, help="batch b is generated with seed + b (default 0)")
    p.add_argument("--batch-size", type=int, default=8, help="sentences generated at once")
    p.add_argument("-o", "--output", default=None, help="report.json (a .md table is written beside it)")
    _add_sampling_args(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_eval_tts)

    p = sub.add_parser("train-codec", help="train a codec from a folder of audio files or a saved dataset")
    p.add_argument("--config", required=True, help="codec config JSON, e.g. configs/codec_small.json")
    p.add_argument("--data", required=True, nargs="+",
                   help="folders of audio files, audio files, or datasets saved with save_to_disk (pooled), "
                        "e.g. the speech and music datasets of `rvqaudio data`")
    p.add_argument("--out", required=True, help="output folder (checkpoints and the final codec)")
    p.add_argument("--max-steps", type=int, default=None, help="override training.max_steps")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--init-from", default=None,
                   help="codec folder to start from instead of random weights (same code space as --config); "
                        "with training.freeze_codes only its decoder trains and its codes stay valid")
    p.add_argument("--seed", type=int, default=None,
                   help="override training.seed, which draws the batches: a run chained after another with "
                        "--init-from sees new crops only with a new seed")
    p.set_defaults(func=_train_codec)

    p = sub.add_parser("train-pitch-head",
                       help="give a trained spectral codec a pitch-phase decoder: fit only its pitch head (same codes)")
    p.add_argument("--codec", required=True, help="codec folder to start from (a spectral codec)")
    p.add_argument("--data", required=True, nargs="+", help="audio folders or saved datasets (pooled), as train-codec")
    p.add_argument("--out", required=True, help="run folder to write: log.jsonl, and the codec in final/")
    p.add_argument("--steps", type=int, default=3000, help="optimisation steps (default 3000)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train_pitch_head)

    p = sub.add_parser("export-codec", help="write a codec run's latest checkpoint as a codec folder (run keeps going)")
    p.add_argument("run", help="the --out folder of train-codec")
    p.add_argument("-o", "--output", required=True, help="codec folder to write (config.json + model.safetensors)")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    p.set_defaults(func=_export_codec)

    p = sub.add_parser("export", help="write the codec's encoder and decoder as ONNX graphs for onnxruntime "
                                      "(needs the export extra)")
    p.add_argument("--codec", default="default", metavar="DIR|default",
                   help="codec folder, or default: the bundled codec (default)")
    p.add_argument("--variant", default=None, metavar="NAME", help=_VARIANT_HELP)
    p.add_argument("-o", "--output", required=True, metavar="FOLDER",
                   help="folder to write: encoder.onnx, decoder.onnx, onnx.json")
    p.set_defaults(func=_export_onnx)

    p = sub.add_parser("average-decoders",
                       help="the mean of codec folders' decoders that share their codes (a model soup of decoder "
                            "fine-tunes), written as a codec folder")
    p.add_argument("folders", nargs="+", help="codec folders (e.g. train-codec runs' final), at least two")
    p.add_argument("-o", "--output", required=True, help="codec folder to write (config.json + model.safetensors)")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    p.set_defaults(func=_average_decoders)
    return parser


# Commands that write a folder, and the argument naming it: checked before any work, as the file outputs are.
_OUTPUT_FOLDERS = {"train-codec": "out", "train-pitch-head": "out", "train-lm": "out", "finetune": "out",
                   "tokenize": "output", "data": "output", "export-codec": "output", "average-decoders": "output",
                   "train-music-classifier": "output", "export": "output"}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        if args.command in _OUTPUT_FOLDERS:
            from .outputs import check_output_folder

            check_output_folder(getattr(args, _OUTPUT_FOLDERS[args.command]), "output folder")
        func(args)
    except (ValueError, ImportError, RuntimeError) as e:  # our errors are ValueErrors that speak to the user
        print(f"rvqaudio {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file system refusal (permissions, a full disk, a folder where a file was expected)
        where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
        print(f"rvqaudio {args.command}: error: cannot access{where}: {e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rvqaudio {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
