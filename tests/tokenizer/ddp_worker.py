"""One process of a multi-process codec training, launched by test_training.py through torchrun.

    python -m torch.distributed.run --standalone --nproc_per_node 2 ddp_worker.py CONFIG DATA OUT [--no-codebook-sync]

Trains with `fit_codec`, then every process writes what it ended with: `OUT/rank{r}.safetensors` (its codec's
state dict, codebooks included) and `OUT/rank{r}.json` (the distributed setup accelerate chose and a digest of
the process's first batch). `--no-codebook-sync` disables the quantizer's all-reduce and broadcasts: a negative
control in which the processes' codebooks must drift apart.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from accelerate import PartialState
from safetensors.torch import save_file

from tokenizer import CodecConfig
from tokenizer.data import AudioCrops
from tokenizer.training import fit_codec


def main() -> None:
    config_path, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if "--no-codebook-sync" in sys.argv[4:]:
        from tokenizer.quantization import vq

        vq._all_reduce_sum = lambda t: t
        vq._broadcast = lambda t: t
    config = CodecConfig.from_json_file(config_path)
    codec = fit_codec(config, data, out)
    state = PartialState()
    rank = state.process_index
    first = AudioCrops.from_config(config, data).batch(0, config.training.batch_size, rank)
    save_file({k: v.contiguous() for k, v in codec.state_dict().items()}, str(out / f"rank{rank}.safetensors"))
    info = {
        "distributed_type": str(state.distributed_type).split(".")[-1],
        "backend": state.backend,
        "num_processes": state.num_processes,
        "first_batch": hashlib.sha256(first.numpy().tobytes()).hexdigest(),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
