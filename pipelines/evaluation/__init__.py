"""Evaluation: codec reconstruction next to Opus; music generation by classifier/tempo/Fréchet distance; TTS
intelligibility by an offline recogniser; paired comparisons of two such reports on the same clips (`compare`).
Metrics are plain functions in `metrics`, with units stated."""

from .asr import transcribe
from .codec_eval import evaluate_codec, format_codec_report, steady_tone_fidelity
from .compare import compare_codec_reports, compare_generation_reports, compare_reports, format_comparison
from .data import OpusResult, load_split, opus_roundtrip
from .input_level import InputLevel
from .metrics import (audio_features, estimate_tempo, frechet_distance, harmonic_energy_fraction, harmonic_tone,
                      mel_distance, normalize_text, pesq_wb, phase_swap, si_sdr, stft_distance, stoi, tempo_errors,
                      wer, word_hits, word_recall)
from .family_classifier import (FamilyClassifier, FamilyClassifierConfig, evaluate_family_classifier,
                                train_family_classifier)
from .music_eval import (evaluate_music, evaluate_music_generation, evaluate_music_lm, evaluate_music_references,
                         format_music_report, format_silence_report)
from .silence import near_silence, near_silence_summary
from .tempo_words import evaluate_tempo_words_lm, format_tempo_word_report
from .tts_eval import duration_correlation, evaluate_tts, evaluate_tts_lm, format_tts_report
from .tts_voices import evaluate_tts_voices, format_voices_report, pooled_ratio

__all__ = [
    "FamilyClassifier", "FamilyClassifierConfig", "InputLevel", "OpusResult", "audio_features", "compare_codec_reports",
    "compare_generation_reports", "compare_reports", "duration_correlation",
    "estimate_tempo", "evaluate_codec", "evaluate_family_classifier", "evaluate_music", "evaluate_music_generation",
    "evaluate_music_lm", "evaluate_music_references", "evaluate_tempo_words_lm", "evaluate_tts", "evaluate_tts_lm", "evaluate_tts_voices",
    "format_codec_report", "format_voices_report", "pooled_ratio",
    "format_comparison", "format_music_report", "format_silence_report", "format_tempo_word_report", "format_tts_report", "frechet_distance", "harmonic_energy_fraction",
    "harmonic_tone", "load_split",
    "mel_distance", "near_silence", "near_silence_summary", "normalize_text", "opus_roundtrip", "pesq_wb", "phase_swap", "si_sdr", "stft_distance", "stoi",
    "steady_tone_fidelity", "tempo_errors", "train_family_classifier", "transcribe", "wer", "word_hits", "word_recall",
]
