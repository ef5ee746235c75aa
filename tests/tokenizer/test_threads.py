"""The codec uses no more CPU threads than there are free cores, and `fixed_threads` overrides that."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch

from tokenizer.threads import fixed_threads, free_threads, others_running, torch_threads

from .conftest import tone


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="reads the load from /proc/stat (Linux)")
def test_a_busy_core_is_left_alone():
    with torch_threads(2):
        busy = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            # the competitor is runnable throughout; sampled a few times against a scheduler's odd moment
            assert max(others_running() or 0 for _ in range(20)) >= 1
            assert min(free_threads() for _ in range(20)) == 1
        finally:
            busy.kill()
            busy.wait()


def test_encode_and_decode_restore_the_callers_setting_and_obey_fixed_threads(codec):
    seen: list[int] = []
    hook = codec.encoder.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    wav = tone(0.3, codec.sample_rate)
    try:
        with torch_threads(2):
            codes = codec.encode(wav)
            assert torch.get_num_threads() == 2 and 1 <= seen[-1] <= 2
            with fixed_threads(2):
                assert torch.equal(codec.encode(wav), codes) and seen[-1] == 2
            with fixed_threads(1):
                codec.decode(codes)
                assert torch.get_num_threads() == 2
    finally:
        hook.remove()
    with pytest.raises(ValueError, match="num_threads"):
        with fixed_threads(0):
            pass
