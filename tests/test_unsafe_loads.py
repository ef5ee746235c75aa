"""No file is loaded in a way that can run code: every Python file of the project (tracked, or new and not ignored) is
scanned for the calls that unpickle or run what a file holds (pickle, torch.load, np.load, accelerate's load_state,
trust_remote_code, transformers' model loading that falls back to torch.load, eval/exec, ...). Each hit must be in
ALLOWED below with the reason it is safe; a new one fails this test until it is made safe or justified here.

Only code is scanned: comments and docstrings that merely mention pickles do not count. String literals are blanked
for the call patterns (an error message saying "torch.load" is not a call) but read by the patterns that catch a
name smuggled through a string (`getattr(torch, "load")`, `import_module("pickle")`).
"""

from __future__ import annotations

import io
import re
import subprocess
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

_PICKLERS = r"(?:c?[Pp]ickle|_pickle|cloudpickle|dill|joblib|shelve|marshal|jsonpickle)"
# name -> pattern, on the code with string literals blanked
CALLS = {
    "pickle import": re.compile(rf"\bimport\s+{_PICKLERS}\b|\bfrom\s+{_PICKLERS}\b\s+import"),
    "pickle load": re.compile(rf"\b{_PICKLERS}\s*\.\s*(?:load|loads|Unpickler|open)\b"),
    "torch.load": re.compile(r"\btorch\s*\.\s*(?:jit\s*\.\s*|hub\s*\.\s*)?load\b"
                            r"|\bfrom\s+torch\s+import\s+[^#]*\bload\b"),
    "np.load": re.compile(r"\b(?:np|numpy)\s*\.\s*load\b|\bfrom\s+numpy\s+import\s+[^#]*\bload\b"),
    "allow_pickle": re.compile(r"\ballow_pickle\b"),
    "weights_only": re.compile(r"\bweights_only\b"),
    "trust_remote_code": re.compile(r"\btrust_remote_code\b"),
    "load_state": re.compile(r"\bload_state\s*\("),  # accelerate's: pickles (load_state_dict is not matched)
    "read_pickle": re.compile(r"\bread_pickle\b"),
    # transformers' model loading falls back to pytorch_model.bin through torch.load
    "transformers model load": re.compile(r"\b(?:AudioLMModel|PreTrainedModel|AutoModel\w*|\w+ForCausalLM)\s*\."
                                          r"\s*from_pretrained\b"),
    "yaml load": re.compile(r"\byaml\s*\.\s*(?:load|unsafe_load|full_load)\b"),
    "eval/exec": re.compile(r"(?<![.\w])(?:eval|exec|__import__)\s*\("),
}
# name -> pattern, on the code with string literals kept
SMUGGLED = {
    "load through getattr/setattr": re.compile(
        rf"\b(?:torch|np|numpy|{_PICKLERS}|yaml)\s*,\s*[\"'](?:load|loads|Unpickler|unsafe_load)[\"']"),
    "pickle module by name": re.compile(rf"import_module\s*\(\s*[\"']{_PICKLERS}[\"']"),
}

# (file, a fragment of the line, why it is safe). An entry that matches no line is stale and fails the test too.
ALLOWED = [
    ("pipelines/codec_files.py", "np.load(src, allow_pickle=False)",
     "reads a codes file with pickles refused: an object array is a CodesError, nothing is unpickled"),
    ("tests/pipelines/test_codes_files_safety.py", "np.load(root / \"good.npz\", allow_pickle=False)",
     "reads the test's own codes file back, pickles refused"),
    ("tests/pipelines/test_codes_files_safety.py", "np.savez(buffer, allow_pickle=True, **fields)",
     "writes (never loads) an object-array file, the attack read_codes must refuse"),
    ("tests/pipelines/test_codes_files_safety.py", "import pickle",
     "writes a pickle payload and replaces pickle.load(s) by a recorder to show nothing unpickles"),
    ("tests/pipelines/test_codes_files_safety.py", "monkeypatch.setattr(pickle, \"loads\"",
     "replaces pickle.loads by a recorder that must stay unused"),
    ("tests/pipelines/test_codes_files_safety.py", "monkeypatch.setattr(pickle, \"load\"",
     "replaces pickle.load by a recorder that must stay unused"),
    ("tests/lm/test_checkpoint.py", "import pickle", "writes a pytorch_model.bin payload that must never be loaded"),
    ("tests/lm/test_checkpoint.py", "monkeypatch.setattr(torch, \"load\", refuse)",
     "replaces torch.load by a function that fails the test"),
    ("tests/pipelines/test_outputs.py", "monkeypatch.setattr(torch, \"load\"",
     "replaces torch.load by a function that fails the test"),
    ("tests/pipelines/test_data_safety.py", "import pickle", "writes the payloads planted in LM run folders"),
    ("tests/tokenizer/test_state_files.py", "import pickle", "writes the payloads planted in codec run folders"),
    ("tests/tokenizer/test_state_files.py", "pickle.loads((tmp_path / \"x.pkl\").read_bytes())",
     "unpickles the test's own payload once, in a temporary folder, to show that it is live"),
    ("tests/test_unsafe_loads.py", "", "this file: the patterns and the scanner's own examples"),
]


def _python_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.py"],
                             cwd=REPO, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the scan lists the project's files with git")
    return [REPO / name for name in sorted(set(out.splitlines())) if (REPO / name).is_file()]


def _code(source: str) -> tuple[list[str], list[str]]:
    """The lines of `source` with comments and docstrings blanked: (with every string literal blanked too, with the
    other string literals kept). Columns are kept, so `model.eval()` still reads as a method call."""
    lines = source.splitlines(keepends=True)
    blanked, kept = [list(line) for line in lines], [list(line) for line in lines]

    def blank(grid, start, end, keep_quotes=False):
        (r0, c0), (r1, c1) = start, end
        for r in range(r0, r1 + 1):
            row = grid[r - 1]
            for c in range(c0 if r == r0 else 0, c1 if r == r1 else len(row)):
                if row[c] != "\n":
                    row[c] = " "
        if keep_quotes:  # an empty string where the literal was (a literal has at least two characters)
            grid[r0 - 1][c0] = grid[r0 - 1][c0 + 1] = '"'

    previous = tokenize.NEWLINE
    for kind, _, start, end, _ in tokenize.generate_tokens(io.StringIO(source).readline):
        statement_start = previous in (tokenize.NEWLINE, tokenize.NL, tokenize.INDENT, tokenize.DEDENT)
        if kind == tokenize.COMMENT or (kind == tokenize.STRING and statement_start):  # a comment or a docstring
            blank(blanked, start, end)
            blank(kept, start, end)
        elif kind == tokenize.STRING:
            blank(blanked, start, end, keep_quotes=True)
        if kind != tokenize.COMMENT:
            previous = kind
    return ["".join(row) for row in blanked], ["".join(row) for row in kept]


def scan(source: str) -> list[tuple[int, str]]:
    """(line number, pattern name) of every unsafe-load pattern in the code of `source`."""
    blanked, kept = _code(source)
    hits = [(row, name) for row, code in enumerate(blanked, 1) for name, pattern in CALLS.items()
            if pattern.search(code)]
    hits += [(row, name) for row, code in enumerate(kept, 1) for name, pattern in SMUGGLED.items()
             if pattern.search(code)]
    return sorted(set(hits))


def test_the_scanner_finds_unsafe_loads_and_ignores_mentions():
    unsafe = '''
import pickle
from dill import loads
state = torch.load(path)
weights = torch.load(path, weights_only=True)
codes = np.load(path, allow_pickle=True)
accelerator.load_state(folder)
model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=True)
lm = AudioLMModel.from_pretrained(folder)
data = pickle.loads(blob)
frame = pandas.read_pickle(path)
config = yaml.load(text)
value = eval(text)
loader = getattr(torch, "load")
module = importlib.import_module("pickle")
'''
    assert [line for line, _ in scan(unsafe)] == [2, 3, 4, 5, 5, 6, 6, 7, 8, 8, 9, 10, 11, 12, 13, 14, 15]
    harmless = '''
"""Nothing here calls torch.load or np.load(allow_pickle=True), nor unpickles anything."""
# torch.load would run code; accelerator.load_state too
model.load_state_dict(state)
codec = RVQCodec.from_pretrained(folder)
config = AudioLMConfig.from_pretrained(folder)
model.eval()
raise CheckpointError("never torch.load a pickle")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".bin")
def refuse_pickles(folder):
    """Name every pickle-format file."""
'''
    assert scan(harmless) == []


def test_no_unsafe_load_outside_the_allow_list():
    unexplained, used = [], set()
    for path in _python_files():
        relative = path.relative_to(REPO).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        try:
            hits = scan(path.read_text(encoding="utf-8"))
        except (tokenize.TokenError, SyntaxError, IndentationError) as e:
            unexplained.append(f"{relative}: cannot be tokenized ({e})")
            continue
        for row, name in hits:
            line = lines[row - 1].strip()
            entry = next((i for i, (file, fragment, _) in enumerate(ALLOWED)
                          if file == relative and fragment in line), None)
            if entry is None:
                unexplained.append(f"{relative}:{row}: {name}: {line}")
            else:
                used.add(entry)
    assert unexplained == [], ("unsafe loads (make them safe, or add them to ALLOWED in this file with the reason "
                               "they are safe):\n" + "\n".join(unexplained))
    stale = [ALLOWED[i][:2] for i in range(len(ALLOWED)) if i not in used and ALLOWED[i][1]]
    assert stale == [], f"ALLOWED entries that match no line any more (remove them): {stale}"
