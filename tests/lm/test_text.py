"""Properties of the text tokenizer: fixed ids, lossless round trips, padding, persistence, determinism."""

import random
import unicodedata

import pytest
import torch

from lm.text import MODEL_FILENAME, TextTokenizer, normalize_text

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A calm piano melody with soft strings in the background.",
    "She sells sea shells by the sea shore.",
    "An upbeat electronic track with a driving bass line.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Heavy drums, distorted guitars and a shouting crowd.",
    "It was the best of times, it was the worst of times.",
    "Jazz trio: brushed snare, walking bass, muted trumpet.",
] * 4


def _synthetic_corpus(n: int, seed: int) -> list[str]:
    """Sentences of made-up words: enough distinct substrings to fill a few hundred pieces."""
    rng = random.Random(seed)
    syllables = ["ka", "lo", "mi", "ten", "dra", "su", "vel", "or", "pin", "qua", "ze", "bri", "hu", "sto"]
    words = ["".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(300)]
    return [" ".join(rng.choices(words, k=rng.randint(4, 12))).capitalize() + "." for _ in range(n)]


@pytest.fixture(scope="module")
def tok() -> TextTokenizer:
    return TextTokenizer.train(CORPUS, vocab_size=1024, seed=0)


def test_special_ids_are_fixed(tok):
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    assert tok.task_id("speech") == 4 and tok.task_id("music") == 5
    # a different corpus must not move them
    other = TextTokenizer.train(_synthetic_corpus(50, seed=1), vocab_size=400)
    assert (other.pad_id, other.unk_id, other.bos_id, other.eos_id) == (0, 1, 2, 3)
    assert (other.task_id("speech"), other.task_id("music")) == (4, 5)


def test_unknown_task_lists_known_ones(tok):
    with pytest.raises(ValueError, match=r"'speech', 'music'"):
        tok.task_id("sfx")
    with pytest.raises(ValueError, match="unknown task"):
        tok.encode("hello", task="sfx")


def test_encode_layout_tag_pieces_eos(tok):
    ids = tok.encode("The quick brown fox.", task="music")
    assert ids[0] == 5 and ids[-1] == tok.eos_id
    pieces = ids[1:-1]
    assert pieces and all(i >= 6 for i in pieces)
    assert tok.encode("The quick brown fox.") == ids[1:]


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "Unseen WORDS, digits 0123456789 and punctuation ?!;:",
        "Emoji 🎵🥁 and CJK 音乐与语音 and Ελληνικά, Кириллица.",
        "Case MATTERS: Read vs read, US vs us.",
        "m² ½ ﬁ",  # compatibility characters survive: we do not apply NFKC
    ],
)
def test_round_trip_is_lossless_and_never_unk(tok, text):
    ids = tok.encode(text, task="speech")
    assert tok.unk_id not in ids
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_normalisation_is_nfc_and_whitespace_only(tok):
    decomposed = "Cafe\u0301  au\tlait \n"  # e + combining acute, irregular whitespace
    assert tok.decode(tok.encode(decomposed)) == "Café au lait"
    assert tok.encode(decomposed) == tok.encode(unicodedata.normalize("NFC", "Café au lait"))
    assert normalize_text("  A\u00a0B  ") == "A B"


def test_unseen_unicode_uses_byte_pieces(tok):
    # the corpus has no CJK: each character must come out as its 3 UTF-8 bytes (ids 6..261)
    ids = tok.encode("语")[:-1]
    byte_ids = [i for i in ids if 6 <= i < 262]
    assert len(byte_ids) == len("语".encode("utf-8"))


def test_decode_skips_specials(tok):
    ids = tok.encode("Soft strings.", task="speech")
    assert tok.decode([tok.pad_id, tok.bos_id] + ids + [tok.pad_id, tok.unk_id]) == "Soft strings."
    with pytest.raises(ValueError, match="outside"):
        tok.decode([tok.vocab_size])


@pytest.mark.parametrize("bad", ["", "   ", "\n\t "])
def test_empty_text_raises(tok, bad):
    with pytest.raises(ValueError, match="empty"):
        tok.encode(bad)
    with pytest.raises(ValueError, match="text 1"):
        tok(["fine", bad])


def test_batch_padding_right_and_left(tok):
    texts = ["Jazz trio.", "A calm piano melody with soft strings in the background.", "Drums"]
    lengths = [len(tok.encode(t, task="music")) for t in texts]
    L = max(lengths)
    for side in ("right", "left"):
        ids, mask = tok(texts, task="music", padding_side=side)
        assert ids.shape == mask.shape == (3, L)
        assert ids.dtype == torch.long and mask.dtype == torch.bool
        assert mask.sum(dim=1).tolist() == lengths
        for row, n in enumerate(lengths):
            expected = tok.encode(texts[row], task="music")
            if side == "right":
                assert mask[row, :n].all() and not mask[row, n:].any()
                assert ids[row, :n].tolist() == expected
                assert (ids[row, n:] == tok.pad_id).all()
            else:
                assert mask[row, L - n:].all() and not mask[row, : L - n].any()
                assert ids[row, L - n:].tolist() == expected
                assert (ids[row, : L - n] == tok.pad_id).all()
    with pytest.raises(ValueError, match="padding_side"):
        tok(texts, padding_side="middle")


def test_per_text_tasks(tok):
    ids, _ = tok(["a voice", "a song"], task=["speech", "music"])
    assert ids[:, 0].tolist() == [4, 5]
    ids, _ = tok(["no tag"])
    assert ids[0, 0].item() not in (4, 5)
    with pytest.raises(ValueError, match="2 tasks for 3 texts"):
        tok(["a", "b", "c"], task=["speech", "music"])


def test_too_long_raises_and_never_truncates(tok):
    texts = ["short", "A calm piano melody with soft strings in the background."]
    n = len(tok.encode(texts[1], task="speech"))
    ids, _ = tok(texts, task="speech", max_length=n)  # exactly at the limit is fine
    assert ids.shape[1] == n
    with pytest.raises(ValueError, match=rf"text 1 is {n} tokens.*max_length={n - 1}"):
        tok(texts, task="speech", max_length=n - 1)


def test_save_load_identical(tok, tmp_path):
    tok.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [MODEL_FILENAME]  # no temp file left
    loaded = TextTokenizer.from_pretrained(tmp_path / "ckpt")
    assert loaded.model_bytes() == tok.model_bytes()
    assert loaded.vocab_size == tok.vocab_size
    texts = ["Emoji 🎵 and CJK 音乐", "The lazy dog."]
    for a, b in zip(tok(texts, task="speech"), loaded(texts, task="speech")):
        assert torch.equal(a, b)
    tok.save_pretrained(tmp_path / "ckpt")  # overwriting an existing model works
    assert TextTokenizer.from_pretrained(tmp_path / "ckpt").model_bytes() == tok.model_bytes()


def test_from_pretrained_missing_and_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError, match=MODEL_FILENAME):
        TextTokenizer.from_pretrained(tmp_path)
    (tmp_path / MODEL_FILENAME).write_bytes(b"\x00not a model" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        TextTokenizer.from_pretrained(tmp_path)


def test_foreign_model_with_other_special_ids_is_refused(tmp_path):
    import io

    import sentencepiece as spm

    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=writer, vocab_size=60, hard_vocab_limit=False,
        minloglevel=2,
    )  # sentencepiece defaults: unk=0 bos=1 eos=2, no pad, no task tags
    (tmp_path / MODEL_FILENAME).write_bytes(writer.getvalue())
    with pytest.raises(ValueError, match="pad=0 unk=1 bos=2 eos=3"):
        TextTokenizer.from_pretrained(tmp_path)


def test_same_corpus_and_seed_same_bytes():
    a = TextTokenizer.train(CORPUS, vocab_size=512, seed=3)
    b = TextTokenizer.train(iter(CORPUS), vocab_size=512, seed=3)  # a one-shot iterator works too
    assert a.model_bytes() == b.model_bytes()
    c = TextTokenizer.train(CORPUS[:-8], vocab_size=512, seed=3)
    assert c.model_bytes() != a.model_bytes()


def test_small_corpus_lowers_vocab_size(tok):
    # 8 distinct sentences cannot fill 1024 pieces: training still succeeds with fewer
    assert 262 < tok.vocab_size < 1024


def test_vocab_size_is_exact_when_corpus_allows():
    tok = TextTokenizer.train(_synthetic_corpus(400, seed=0), vocab_size=320)
    assert tok.vocab_size == 320


def test_vocab_size_too_small_raises():
    with pytest.raises(ValueError, match="at least 263"):
        TextTokenizer.train(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match=r"need at least \d+"):
        TextTokenizer.train(CORPUS, vocab_size=270)  # bytes + specials fit, but not the corpus' characters


def test_empty_corpus_raises():
    with pytest.raises(ValueError, match="no text"):
        TextTokenizer.train(["", "  "])
