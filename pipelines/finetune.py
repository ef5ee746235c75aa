"""`rvqaudio train-lm` and `rvqaudio finetune`, also runnable under a launcher with the same arguments:

    python -m pipelines.finetune train-lm --config configs/lm_tiny.json --data DATA --codec CODEC --out OUT
    torchrun --standalone --nproc_per_node 2 -m pipelines.finetune finetune --model LM --data DATA --out OUT
    accelerate launch --multi_gpu --num_processes 2 -m pipelines.finetune train-lm ...

Each process of a launch runs the same command; see `pipelines.lm_training` for what is written to OUT.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, nargs="+",
                        help="tokenized dataset(s): `rvqaudio tokenize` outputs or datasets saved with save_to_disk "
                             "(a DatasetDict's validation/test split is the held-out set); several are trained on "
                             "together, e.g. speech and music, each with its own task")
    parser.add_argument("--out", required=True, help="run folder: log.jsonl, checkpoint/ and final/ (the LM folder)")
    parser.add_argument("--training-config", default=None,
                        help="training settings JSON, e.g. configs/lm_train_small.json (default: LMTrainingConfig())")
    parser.add_argument("--max-steps", type=int, default=None, help="total optimizer steps (overrides the config)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--eval-data", default=None, help="held-out tokenized dataset (default: from --data)")
    parser.add_argument("--task", choices=["speech", "music"], default=None,
                        help="task of rows without a task column (default: speech if the data has voices, else music)")


def add_train_lm_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `rvqaudio train-lm` (see `train_lm`)."""
    parser.add_argument("--config", required=True, help="LM architecture preset, e.g. configs/lm_small.json")
    parser.add_argument("--codec", default=None,
                        help="folder of the codec that tokenized --data (default: the bundled codec)")
    add_common_arguments(parser)


def add_finetune_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `rvqaudio finetune` (see `finetune`)."""
    parser.add_argument("--model", required=True, help="self-contained LM folder (e.g. the final/ of train-lm)")
    add_common_arguments(parser)
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters only, merged at the end (needs peft)")


def run_train_lm(args: argparse.Namespace) -> None:
    """`train_lm` with the parsed arguments of `add_train_lm_arguments`; prints the LM folder on the main process."""
    from accelerate import PartialState

    from .lm_training import train_lm

    final = train_lm(args.config, args.data, args.out, codec=args.codec, training=args.training_config,
                     max_steps=args.max_steps, resume=args.resume, eval_data=args.eval_data, task=args.task)
    if PartialState().is_main_process:
        print(f"saved the trained LM to {final}")


def run_finetune(args: argparse.Namespace) -> None:
    """`finetune` with the parsed arguments of `add_finetune_arguments`; prints the LM folder on the main process."""
    from accelerate import PartialState

    from .lm_training import finetune

    final = finetune(args.model, args.data, args.out, training=args.training_config, max_steps=args.max_steps,
                     resume=args.resume, lora=args.lora, eval_data=args.eval_data, task=args.task)
    if PartialState().is_main_process:
        print(f"saved the fine-tuned LM to {final}")


def add_eval_lm_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of `rvqaudio eval-lm` (see `lm_training.evaluate_lm`)."""
    parser.add_argument("--model", required=True, help="self-contained LM folder (e.g. the final/ of train-lm)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="the tokenized dataset(s) the LM trained on; their held-out rows are evaluated")
    parser.add_argument("--training-config", default=None,
                        help="the run's training settings JSON: its seed and held-out settings pick the rows")
    parser.add_argument("--eval-data", default=None, help="held-out tokenized dataset (default: from --data)")
    parser.add_argument("--task", choices=["speech", "music"], default=None,
                        help="task of rows without a task column (default: speech if the data has voices, else music)")
    parser.add_argument("--run", default=None,
                        help="the run's output folder: with training.phoneme_alignment its kept alignment is reused "
                             "(read only) instead of aligning again")
    parser.add_argument("--weights", choices=["float", "int8"], default="float",
                        help="the LM's products on a CPU: its stored weights, or the int8 inference path")
    parser.add_argument("-o", "--output", default=None, help="report.json")


def run_eval_lm(args: argparse.Namespace) -> None:
    """`evaluate_lm` with the parsed arguments of `add_eval_lm_arguments`; prints the figures."""
    from .lm_training import evaluate_lm

    report = evaluate_lm(args.model, args.data, training=args.training_config, eval_data=args.eval_data,
                         task=args.task, run=args.run, output=args.output, weights=args.weights)
    print(f"held-out loss {report['eval_loss']:.4f} nats/code over {report['eval_items']} rows "
          f"({report['eval_tasks']}); per codebook {report['eval_codebook_losses']}")
    for task, gain in report["eval_text_gain"].items():
        print(f"text gain, {task}: {gain:.4f} nats/code (codebook 0: "
              f"{report['eval_text_gain_codebooks'][task][0]:.4f}); about 0 means the LM ignores its text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.finetune",
                                     description="Train an audio LM from scratch or fine-tune one.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-lm", help="train a text tokenizer and a fresh LM on a tokenized dataset")
    add_train_lm_arguments(p)
    p.set_defaults(func=run_train_lm)
    p = sub.add_parser("finetune", help="continue training an LM folder on a tokenized dataset")
    add_finetune_arguments(p)
    p.set_defaults(func=run_finetune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as e:  # errors that speak to the user
        print(f"{args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
