"""Caption metrics as the COCO caption evaluation computes them, plus the shapes truth rate.

BLEU-1..4, METEOR, ROUGE-L and CIDEr-D come from pycocoevalcap's own scorers, fed
exactly as its ``COCOEvalCap.evaluate`` feeds them: every caption goes through the
Stanford PTB tokenizer (lower-cased, punctuation tokens dropped), then each scorer
gets ``{image: [candidate]}`` and ``{image: [references...]}``. Two notes on what
pycocoevalcap computes:

- its ``Cider`` is CIDEr-D (Vedantam et al. 2015, as used on the COCO server):
  n-grams 1..4, tf-idf with document frequencies taken from *the evaluated
  images' references* (so the score depends on the image set; one image alone
  always scores 0), candidate counts clipped by the reference counts, a Gaussian
  length penalty with sigma 6, the mean over references, times 10;
- its BLEU is corpus-level BLEU with the "closest" reference length and a 1e-9
  smoothing, so identical captions score 1 (to ~1e-9) when they have >= 4 words.

Java is needed for the PTB tokenizer and METEOR. Without ``java`` on PATH (or
with ``use_java=False``) captions are tokenized by :func:`python_tokenize`, which
mimics the PTB tokenizer on caption-like text, and METEOR is left out with one
warning. SPICE is always left out: it needs Stanford CoreNLP models downloaded at
run time, which cannot happen offline. Both omissions are recorded in the result.

What this module does NOT know: models, decoding, vocabularies or token ids. It
takes strings (one candidate and a list of references per image) and returns
numbers, each result labelled with its split, decoding method and image count.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import sys
import tempfile
import warnings

__all__ = ["evaluate_captions", "python_tokenize", "ptb_tokenize", "format_scores",
           "caption_is_true", "truth_rate", "COCO_METRICS"]

COCO_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
SPICE_OMITTED = "SPICE needs Stanford CoreNLP models downloaded at run time; left out offline"
METEOR_NO_JAVA = "METEOR needs Java and `java` is not on PATH"
METEOR_OFF = "METEOR not requested (meteor=False)"
METEOR_JAVA_OFF = "METEOR needs Java, which use_java=False turned off"

# Tokens that pycocoevalcap's PTBTokenizer deletes after tokenizing (its PUNCTUATIONS).
# Its list has "-LRB-" etc. in upper case while the jar runs with -lowerCase, so
# brackets survive as "-lrb-"; python_tokenize keeps that quirk to match.
_PTB_DROPPED = frozenset(["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                          ".", "?", "!", ",", ":", "-", "--", "...", ";"])
_BRACKETS = {"(": " -lrb- ", ")": " -rrb- ", "[": " -lsb- ", "]": " -rsb- ",
             "{": " -lcb- ", "}": " -rcb- "}
_ABBREVIATIONS = frozenset(["mr.", "mrs.", "ms.", "dr.", "st.", "ft.", "jr.", "sr.", "vs.",
                            "etc.", "inc.", "ltd.", "co.", "no."])
_CLITIC = re.compile(r"^(.+?)('s|'re|'ve|'ll|'d|'m)$")
_SPLIT_WORDS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "wanna": ["wan", "na"],
                "gotta": ["got", "ta"]}

_warned_no_java = False
_meteor = None  # one METEOR JVM per process: starting it costs ~10 s


# --------------------------------------------------------------------------- tokenizing

def _split_chunk(chunk):
    """PTB-style tokens of one whitespace-free, lower-cased chunk."""
    if re.fullmatch(r"<[^<>]+>", chunk) or chunk == "'n'":  # <unk>, rock 'n' roll: whole
        return [chunk]
    front, back = [], []
    while chunk and chunk[0] in "'`$#":
        front.append(chunk[0])
        chunk = chunk[1:]
    while chunk:
        if chunk in _ABBREVIATIONS or re.fullmatch(r"(?:[a-z]\.){2,}", chunk):
            break  # "mr." and "u.s." keep their period
        run = re.search(r"[.?!]+$", chunk)
        if run:  # "..." or "?!" stay one token, as in PTB
            back.insert(0, run.group())
            chunk = chunk[:run.start()]
        elif chunk[-1] in ",;:'`%":
            back.insert(0, chunk[-1])
            chunk = chunk[:-1]
        else:
            break
    middle = []
    for part in re.split(r"(\+)", chunk):
        if not part:
            continue
        if part in _SPLIT_WORDS:
            middle += _SPLIT_WORDS[part]
        elif part.endswith("n't") and len(part) > 3:
            middle += [part[:-3], "n't"]
        elif _CLITIC.match(part):
            middle += list(_CLITIC.match(part).groups())
        else:
            middle.append(part)
    return front + middle + back


def python_tokenize(caption: str) -> str:
    """Tokenize one caption the way pycocoevalcap's Java PTB tokenizer would.

    Lower-cases; splits off punctuation, clitics ("it's" -> "it 's",
    "isn't" -> "is n't"), "$", "#", "%" and "+"; keeps "u.s.", "mr.", "3.5",
    "1,000", "black-and-white" and "<unk>" whole; maps brackets to -lrb- etc.;
    then drops COCO's punctuation tokens. It matches the jar on ordinary
    captions (tests compare them) but is not a full PTB implementation.

    Args:
        caption: raw caption text.
    Returns:
        the space-joined tokens ('' if nothing is left).
    """
    s = " ".join(caption.lower().split())
    for bracket, name in _BRACKETS.items():
        s = s.replace(bracket, name)
    s = s.replace('"', " ")  # PTB turns these into `` and '', which COCO drops
    tokens = [t for chunk in s.split() for t in _split_chunk(chunk)]
    return " ".join(t for t in tokens if t not in _PTB_DROPPED)


def ptb_tokenize(captions_by_image: dict) -> dict:
    """Tokenize with pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1, needs Java).

    Args:
        captions_by_image: {image: [caption str, ...]}.
    Returns:
        {image: [tokenized caption, ...]}, same keys and list lengths.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # The jar reads one caption per line; any line break the JVM recognises
    # (\r, \u2028, ...) would shift every later caption onto the wrong image.
    wrapped = {k: [{"caption": " ".join(c.split())} for c in v]
               for k, v in captions_by_image.items()}
    with _captured_stderr() as captured:  # the JVM reports "PTBTokenizer tokenized N tokens" there
        try:
            out = PTBTokenizer().tokenize(wrapped)
        except Exception as err:
            raise RuntimeError(f"the Java PTB tokenizer failed: {err}; "
                               f"it said: {captured.read().strip() or 'nothing'}") from err
    if any(len(out.get(k, [])) != len(v) for k, v in captions_by_image.items()):
        raise RuntimeError("the PTB tokenizer returned a different number of captions than "
                           "it was given; refusing to score misaligned captions")
    return out


@contextlib.contextmanager
def _captured_stderr():
    """Send this process's file descriptor 2 (and so a child JVM's stderr) to a temporary file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield tmp
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)


def _java_usable() -> bool:
    """Java on PATH, and pycocoevalcap's tokenizer folder writable (it puts a temp file there)."""
    if shutil.which("java") is None:
        return False
    import pycocoevalcap.tokenizer.ptbtokenizer as tok
    return os.access(os.path.dirname(os.path.abspath(tok.__file__)), os.W_OK)


# --------------------------------------------------------------------------- scoring

def _as_dicts(candidates, references):
    """Normalise list or dict inputs to (image keys, {i: [candidate]}, {i: [refs]})."""
    if isinstance(candidates, dict) != isinstance(references, dict):
        raise TypeError("candidates and references must both be dicts keyed by image, "
                        "or both be lists in the same image order")
    if isinstance(candidates, dict):
        if set(candidates) != set(references):
            missing = sorted(map(str, set(candidates) ^ set(references)))[:5]
            raise ValueError(f"candidates and references cover different images, e.g. {missing}")
        keys = list(candidates)
    else:
        candidates, references = list(candidates), list(references)
        if len(candidates) != len(references):
            raise ValueError(f"got {len(candidates)} candidates but {len(references)} "
                             "reference lists; need one list of references per candidate")
        keys = list(range(len(candidates)))
    if not keys:
        raise ValueError("no captions to evaluate: candidates is empty")
    cands, refs = {}, {}
    for i, k in enumerate(keys):
        c, r = candidates[k] if isinstance(candidates, dict) else candidates[i], \
            references[k] if isinstance(references, dict) else references[i]
        if not isinstance(c, str):
            raise TypeError(f"candidate for image {k!r} must be a str, got {type(c).__name__}")
        if isinstance(r, str) or not all(isinstance(x, str) for x in r) or len(r) == 0:
            raise ValueError(f"references for image {k!r} must be a non-empty list of str, "
                             f"got {r!r:.80}")
        cands[i], refs[i] = [c], list(r)
    return keys, cands, refs


def evaluate_captions(candidates, references, *, split: str, method: str, truths=None,
                      use_java: bool | None = None, meteor: bool = True) -> dict:
    """Score generated captions against references with the COCO caption metrics.

    Args:
        candidates: one generated caption per image, a list of str or {image: str}.
        references: the human captions per image, a list of lists of str (same
            order) or {image: [str, ...]} (same keys).
        split: name of the split the images come from (kept in the result).
        method: how the captions were decoded, e.g. 'greedy' or 'beam-3' (kept).
        truths: optional shapes ground truth per image (same order as a list, or
            same keys); adds 'truth_rate', the share of captions fully true.
        use_java: True forces the Java tokenizer and METEOR, False forces the
            Python tokenizer without METEOR, None uses Java when it is available.
        meteor: False leaves METEOR out even with Java (it costs ~10 s to start).

    Returns:
        dict with 'split', 'method', 'num_images', 'tokenizer' ('ptb-java' or
        'python'), 'Bleu_1'..'Bleu_4', 'ROUGE_L', 'CIDEr', 'METEOR' when computed,
        'truth_rate' when truths are given, and 'omitted' {metric: reason}.
    """
    global _warned_no_java
    keys, cands, refs = _as_dicts(candidates, references)
    java_ok = _java_usable()
    if use_java and not java_ok:
        raise RuntimeError("use_java=True but Java cannot run pycocoevalcap's tokenizer "
                           "(`java` missing from PATH, or its package folder is read-only)")
    java = java_ok if use_java is None else bool(use_java)

    result = {"split": split, "method": method, "num_images": len(cands),
              "tokenizer": "ptb-java" if java else "python"}
    omitted = {"SPICE": SPICE_OMITTED}
    if java:
        both = ptb_tokenize({("c", k): v for k, v in cands.items()}
                            | {("r", k): v for k, v in refs.items()})
        res = {k: both[("c", k)] for k in cands}
        gts = {k: both[("r", k)] for k in refs}
    else:
        if use_java is None and not _warned_no_java:
            warnings.warn("Java is not available: captions are tokenized by "
                          "rnncap.metrics.python_tokenize and METEOR is left out",
                          RuntimeWarning, stacklevel=2)
            _warned_no_java = True
        res = {k: [python_tokenize(c) for c in v] for k, v in cands.items()}
        gts = {k: [python_tokenize(c) for c in v] for k, v in refs.items()}

    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    for n, value in enumerate(bleu, start=1):
        result[f"Bleu_{n}"] = float(value)
    if java and meteor:
        try:
            result["METEOR"] = float(_meteor_scorer().compute_score(gts, res)[0])
        except (ValueError, OSError) as e:  # the JVM died or printed no score
            raise RuntimeError(f"METEOR (meteor-1.5.jar under Java) gave no score: {e}; "
                               "pass meteor=False to evaluate without it") from e
    else:
        omitted["METEOR"] = (METEOR_OFF if java else
                             METEOR_NO_JAVA if use_java is None else METEOR_JAVA_OFF)
    result["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    if any(ref.split() for v in gts.values() for ref in v):
        result["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    else:  # CIDEr weighs n-grams by their document frequency: with no words it is undefined
        omitted["CIDEr"] = "every reference caption is empty"
    if truths is not None:
        if isinstance(truths, dict):
            if not isinstance(candidates, dict) or set(truths) != set(keys):
                raise ValueError("truths given as a dict must have the candidates' image keys")
            truths = [truths[k] for k in keys]
        elif len(truths) != len(keys):
            raise ValueError(f"got {len(truths)} truths for {len(keys)} captions")
        result["truth_rate"] = truth_rate([cands[i][0] for i in cands], list(truths))
    result["omitted"] = omitted
    return result


def _meteor_scorer():
    """The process's METEOR scorer, started on first use and kept (JVM start-up is slow)."""
    global _meteor
    if _meteor is None or _meteor.meteor_p.poll() is not None:
        from pycocoevalcap.meteor.meteor import Meteor
        _meteor = Meteor()
        atexit.register(_close_meteor, _meteor)
    return _meteor


def _close_meteor(scorer):
    """Stop a METEOR JVM and close its pipes (pycocoevalcap leaves them open)."""
    _stop_process(scorer.meteor_p)


def _stop_process(proc):
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def format_scores(scores: dict) -> str:
    """One line for logs, e.g. 'test greedy (500 images): BLEU-4 0.301 CIDEr 0.912 ...'."""
    names = {"Bleu_1": "BLEU-1", "Bleu_2": "BLEU-2", "Bleu_3": "BLEU-3", "Bleu_4": "BLEU-4",
             "METEOR": "METEOR", "ROUGE_L": "ROUGE-L", "CIDEr": "CIDEr", "truth_rate": "truth"}
    parts = [f"{names[k]} {scores[k]:.3f}" for k in names if k in scores]
    head = f"{scores['split']} {scores['method']} ({scores['num_images']} images)"
    return f"{head}: {' '.join(parts)}"


# --------------------------------------------------------------------------- shapes truth

def caption_is_true(caption: str, truth) -> bool:
    """Whether everything a shapes caption asserts holds in its image.

    The check itself belongs to the data package (it knows the shapes grammar);
    this forwards to it so that evaluation needs one import.
    """
    from rnncap.data.truth import caption_is_true as check
    verdict = check(caption, truth)
    # The check may also explain itself as (bool, reason); a bare tuple is always truthy.
    return bool(verdict[0] if isinstance(verdict, tuple) else verdict)


def truth_rate(captions, truths) -> float:
    """Share of captions that are fully true of their shapes image (see :func:`caption_is_true`)."""
    from rnncap.data.truth import truth_rate as rate
    return float(rate(list(captions), list(truths)))
