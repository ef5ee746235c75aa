"""Decoder variants: other decoder weights for the codes of a codec folder (e.g. a decoder trained on speech alone).

A variant `name` is two files beside the folder's `config.json` and `model.safetensors`:

- `decoder.<name>.json`: what the decoder is, on its own: `{"config": <the codec config the decoder is built from
  (training aside)>, "code_space": <the fingerprint (RVQCodec.fingerprint) of the codes it decodes>}`;
- `decoder.<name>.safetensors`: its tensors (`decoder.*`), whose metadata holds the sha256 of that JSON file, so that
  a pair that was not saved together is refused.

It is tied to the folder's codec by the fingerprint alone: `RVQCodec.from_pretrained(folder, variant=name)` builds
the folder's codec with the variant's decoder and refuses it when their code spaces differ. A variant file without a
JSON file (the older form) holds in its metadata (`decoder_settings`) only the phase settings that differ from the
folder's config.json; it still loads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .checkpoint import (check_state_dict, list_variants, load_checkpoint, load_tensors, save_tensors,
                         variant_config_file, variant_file)
from .config import DECODER_PHASE_SETTINGS, LEGACY_PHASE_FLAGS, CodecConfig, SpectralConfig
from .config_files import merge_config_dicts
from .errors import CheckpointError, CodecError
from .modules import SEANetDecoder, SpectralDecoder
from .modules.phase import rename_phase_tensors

if TYPE_CHECKING:
    from .model import RVQCodec

DECODER_PREFIX = "decoder."  # the tensors a decoder variant replaces; the rest (encoder, quantizer) make the codes
VARIANT_SETTINGS_KEY = "decoder_settings"  # older variant files' metadata: the phase settings they decode with
VARIANT_CONFIG_DIGEST_KEY = "decoder_config_sha256"  # a variant file's metadata: the sha256 of its JSON file


def split_decoder(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A state dict's tensors that make the codes (encoder, quantizer), and the decoder's, which a variant replaces."""
    codes_side = {k: v for k, v in state.items() if not k.startswith(DECODER_PREFIX)}
    return codes_side, {k: v for k, v in state.items() if k.startswith(DECODER_PREFIX)}


def read_variant_config(directory: str | os.PathLike, variant: str) -> tuple[CodecConfig, str] | None:
    """A variant's JSON file: (the config its decoder is built from, the fingerprint of the codes it decodes); None
    when the variant has no JSON file (the older form). CheckpointError naming the file when it is malformed."""
    path = variant_config_file(directory, variant)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not (isinstance(data, dict) and set(data) == {"config", "code_space"} and isinstance(data["code_space"], str)):
        raise CheckpointError(f"{str(path)!r} is not a decoder variant's config: it holds an object with 'config' (a "
                              "codec config) and 'code_space' (the fingerprint of the codes it decodes), "
                              f"got {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    try:
        return CodecConfig.from_dict(data["config"]), data["code_space"]
    except CodecError as e:
        raise CheckpointError(f"{str(path)!r} holds no valid codec config: {e}") from e


def build_decoder(config: CodecConfig) -> nn.Module:
    """The decoder of a codec of `config`: latent (B, dimension, T) -> waveform (B, channels, T * hop_length)."""
    return SEANetDecoder(config) if config.spectral is None else SpectralDecoder(config)


def load_decoder_variant(directory: str | os.PathLike, variant: str) -> tuple[CodecConfig, nn.Module, str]:
    """A decoder variant on its own, in eval mode: (its config, the decoder with its weights, the fingerprint of the
    codes it decodes). It needs the variant's JSON file; the folder's codec is not read."""
    path = variant_file(directory, variant)
    found = read_variant_config(directory, variant)
    if found is None or not path.is_file():
        missing = path if found is not None else variant_config_file(directory, variant)
        raise CheckpointError(f"decoder variant {variant!r} in {str(directory)!r} cannot load on its own: it has no "
                              f"{missing.name}")
    config, code_space = found
    tensors, metadata = load_tensors(path)
    _check_pair(path, metadata)
    decoder = build_decoder(config)
    state = {k.removeprefix(DECODER_PREFIX): v for k, v in rename_phase_tensors(tensors).items()}
    expected = decoder.state_dict()
    check_state_dict(expected, state, repr(str(path)))
    decoder.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return config, decoder.eval(), code_space


def with_variant(config_dict: dict, state: dict[str, torch.Tensor], directory: str | os.PathLike,
                 variant: str) -> tuple[dict, dict[str, torch.Tensor], str | None]:
    """A folder's config and weights (`config_dict`, `state`) read with decoder variant `variant`: its decoder
    settings in the config, its decoder tensors in place of the folder's; and the fingerprint of the codes it
    decodes (None for a variant of the older form, which does not state it)."""
    path = variant_file(directory, variant)
    if not path.is_file():
        known = list_variants(directory)
        raise CheckpointError(f"codec folder {str(directory)!r} has no decoder variant {variant!r} ({path.name}); "
                              f"it has {known if known else 'none'}")
    decoder, metadata = load_tensors(path)
    decoder = rename_phase_tensors(decoder)
    state = rename_phase_tensors(state)
    foreign = sorted(split_decoder(decoder)[0])
    shapes = sorted(k for k in decoder if k in state and decoder[k].shape != state[k].shape)
    problems = ([f"tensors that are not this codec's decoder {foreign[:5]}"] if foreign else []) + (
        [f"other shapes for {shapes[:5]}"] if shapes else [])
    found = read_variant_config(directory, variant)
    code_space = None
    if found is not None:
        _check_pair(path, metadata)
        config, code_space = found
        differs = _code_space_differences(config_dict, config, directory)
        if differs:
            problems.append(f"{variant_config_file(directory, variant).name} describes a codec whose code space "
                            f"differs in {differs}")
        settings = _read_settings(metadata.get(VARIANT_SETTINGS_KEY))
        if settings and not differs and CodecConfig.from_dict(merge_codec_settings(config_dict, settings)) != (
                CodecConfig.from_dict({**config_dict, "spectral": config.to_dict()["spectral"]})):
            problems.append(f"its {VARIANT_SETTINGS_KEY!r} metadata and {variant_config_file(directory, variant).name} "
                            "describe different decoders")
        config_dict = {**config_dict, "spectral": config.to_dict()["spectral"]}
    elif VARIANT_CONFIG_DIGEST_KEY in metadata:
        problems.append(f"its config file {variant_config_file(directory, variant).name} is missing (save the "
                        "variant again with RVQCodec.save_decoder_variant)")
    else:
        settings = _read_settings(metadata.get(VARIANT_SETTINGS_KEY))
        if settings is None:
            problems.append(f"its {VARIANT_SETTINGS_KEY!r} metadata is not decoder phase settings "
                            f"(a JSON object {{'spectral': {{...}}}} of {list(LEGACY_PHASE_FLAGS)})")
        elif settings:
            config_dict = merge_codec_settings(config_dict, settings)
    if problems:
        raise CheckpointError(f"{str(path)!r} does not fit the codec in {str(directory)!r}: " + "; ".join(problems))
    return config_dict, {**split_decoder(state)[0], **decoder}, code_space


def check_code_space(codec: RVQCodec, code_space: str | None, directory: str | os.PathLike, variant: str) -> None:
    """Refuse a codec built with decoder variant `variant` whose codes are not those the variant decodes."""
    if code_space is not None and codec.fingerprint != code_space:
        raise CheckpointError(f"decoder variant {variant!r} decodes the codes of the codec with fingerprint "
                              f"{code_space!r}, but the codec in {str(directory)!r} has fingerprint "
                              f"{codec.fingerprint!r}: its encoder or codebooks are not the ones the decoder was "
                              "trained on. Use the variant with the codec folder it was saved into, or save a decoder "
                              "of this codec with RVQCodec.save_decoder_variant")


def save_variant(codec: RVQCodec, directory: str | os.PathLike, variant: str, dtype: torch.dtype | None) -> Path:
    """`RVQCodec.save_decoder_variant`: write `decoder.<variant>.safetensors` and `decoder.<variant>.json`."""
    config_dict, state = load_checkpoint(directory)
    path, config_path = variant_file(directory, variant), variant_config_file(directory, variant)  # check the name
    try:
        folder = CodecConfig.from_dict(config_dict).to_dict()
    except CodecError as e:
        raise CheckpointError(f"config.json in {str(directory)!r} is not a valid codec config: {e}") from e
    differs = _decoder_differences(folder, codec.config.to_dict())
    if differs:
        raise CheckpointError(f"cannot save a decoder variant into {str(directory)!r}: its config differs from "
                              f"this codec's in {differs} (a variant has the folder's config, only other decoder "
                              "weights and phase settings)")
    state = rename_phase_tensors(state)
    codes_side, decoder = split_decoder(codec.state_dict())
    check_state_dict(codes_side, split_decoder(state)[0], repr(str(directory)))
    changed = [k for k, v in codes_side.items() if not torch.equal(v.detach().cpu().to(state[k].dtype), state[k])]
    if changed:
        more = " ..." if len(changed) > 5 else ""
        raise CheckpointError(f"cannot save a decoder variant into {str(directory)!r}: this codec's encoder or "
                              f"codebooks differ from the folder's ({changed[:5]}{more}), so their codes would "
                              "differ; a variant only replaces the decoder")
    config = codec.config.to_dict()
    config.pop("training")
    text = json.dumps({"config": config, "code_space": codec.fingerprint}, indent=2, sort_keys=True) + "\n"
    # Both written to temporary siblings before either replaces its file; a save cut between the two replacements
    # leaves a pair whose digests disagree, which loading refuses.
    tmp = config_path.with_name(f".{config_path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        save_tensors(path, decoder, dtype=dtype, metadata={VARIANT_CONFIG_DIGEST_KEY: _digest(text)})
        os.replace(tmp, config_path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def merge_codec_settings(base: dict, new: dict) -> dict:
    """Codec config dict `base` with `new`'s entries, dicts merged into nested dicts. A phase model in `new`
    (`spectral.phase`) merges into `base`'s when of the same kind and replaces it otherwise; phase flags of the
    older form (`spectral.edge_phase`, ...) apply over `base`'s phase model in either form."""
    theirs, ours = new.get("spectral"), base.get("spectral")
    if not (isinstance(theirs, dict) and isinstance(ours, dict) and "phase" in theirs):
        return merge_config_dicts(base, new)
    merged = merge_config_dicts(base, {k: v for k, v in new.items() if k != "spectral"})
    ours = {k: v for k, v in ours.items() if k not in LEGACY_PHASE_FLAGS} | {
        "phase": SpectralConfig.from_dict(ours).phase.to_dict()}
    phase = theirs["phase"]
    if isinstance(phase, dict) and phase.get("kind", ours["phase"]["kind"]) == ours["phase"]["kind"]:
        phase = merge_config_dicts(ours["phase"], phase)
    merged["spectral"] = merge_config_dicts(ours, {k: v for k, v in theirs.items() if k != "phase"}) | {
        "phase": phase}
    return merged


def override_config(config_dict: dict, overrides: dict[str, Any], source: str | os.PathLike) -> dict:
    """`config_dict` with `overrides` merged in (`merge_codec_settings`), checked to keep its code space."""
    try:
        merged = merge_codec_settings(config_dict, overrides)
        before, after = CodecConfig.from_dict(config_dict), CodecConfig.from_dict(merged)
    except CodecError as e:
        raise CodecError(f"overrides {overrides} do not make a valid config of {str(source)!r}: {e}") from e
    changed = before.code_space_differences(after)
    if changed:
        raise CodecError(f"overrides {overrides} change what the codes of {str(source)!r} mean (fields {changed}); "
                         "only settings outside the code space can be overridden (how the decoder states phase, "
                         "chunk_seconds, name, training)")
    return merged


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _check_pair(path: Path, metadata: dict[str, str]) -> None:
    """Refuse a variant's tensors and JSON file that were not saved together."""
    expected = metadata.get(VARIANT_CONFIG_DIGEST_KEY)
    config_path = path.with_suffix(".json")  # decoder.<name>.json beside decoder.<name>.safetensors
    if expected is not None and expected != _digest(config_path.read_text()):
        raise CheckpointError(f"{config_path.name} in {str(path.parent)!r} was not saved with {path.name} (its "
                              "sha256 is not the one the tensors' file records); save the variant again with "
                              "RVQCodec.save_decoder_variant")


def _code_space_differences(config_dict: dict, variant: CodecConfig, directory: str | os.PathLike) -> list[str]:
    try:
        folder = CodecConfig.from_dict(config_dict)
    except CodecError as e:
        raise CheckpointError(f"config.json in {str(directory)!r} is not a valid codec config: {e}") from e
    return folder.code_space_differences(variant)


def _decoder_differences(folder: dict, mine: dict) -> list[str]:
    """The fields by which config dict `mine` differs from `folder`'s other than `name`, `training` and the
    decoder's phase model (`spectral.phase`), which a variant may set differently."""
    differs = sorted(k for k in mine.keys() | folder.keys()
                     if k not in ("name", "training", "spectral") and mine.get(k) != folder.get(k))
    spectral, theirs = mine.get("spectral"), folder.get("spectral")
    if not (isinstance(spectral, dict) and isinstance(theirs, dict)):
        return differs + (["spectral"] if spectral != theirs else [])
    fields = sorted(f for f in spectral.keys() | theirs.keys() if spectral.get(f) != theirs.get(f))
    return differs + [f"spectral.{f}" for f in fields if f not in DECODER_PHASE_SETTINGS]


def _read_settings(text: str | None) -> dict | None:
    """An older variant file's phase settings from its metadata ({} when it has none), or None when malformed."""
    if text is None:
        return {}
    try:
        settings = json.loads(text)
    except json.JSONDecodeError:
        return None
    ok = (isinstance(settings, dict) and set(settings) <= {"spectral"}
          and isinstance(settings.get("spectral", {}), dict)
          and set(settings.get("spectral", {})) <= set(LEGACY_PHASE_FLAGS))
    return settings if ok else None
