"""Convert Emo-DB (Berlin Database of Emotional Speech) to the MSP-Podcast layout (docs/corpus.md, docs/corpora.md).

    python prepare_corpus.py emodb ../shared/datasets/emodb data/emodb
    python prepare_emodb.py ../shared/datasets/emodb data/emodb
    python prepare_emodb.py ../shared/datasets/emodb data/emodb_loso03 --loso 03

How the pieces are derived (real speech, simulated ratings):
- Audio: wav/SSTTTEV.wav (any rate, e.g. 22.05 kHz) resampled to 16 kHz mono 16-bit PCM (soxr HQ), same
  file names (SS speaker, TTT sentence code, E emotion letter, V version).
- Transcripts: the ten Emo-DB sentences from the sentence code. a05 is written as spoken
  in the recordings ("Das schwarze Blatt Papier ..."; the syllable files say "blatt" in all
  of them) although the corpus documentation lists "Stück Papier".
- Word alignments (ForceAligned/*.TextGrid): silb/<name>.silb holds one line per syllable,
  `<onset time s> <syllable>`, "(" marks a pause and "." the end of speech; a syllable lasts
  until the next onset. Syllables are grouped into the words of the transcript by dynamic
  programming: every word gets a contiguous, non-empty run of syllables and the cost of a
  run is 1 - similarity(concatenated syllables, word) (difflib ratio, case-folded) plus 0.1
  when the run does not start with the word's first letter, so spellings such as
  "gehen hn", "haben bm" or "abend bmd" still land on the right word. Pauses ("(")
  and the parts before the first and after the last syllable are empty (silence)
  intervals. Words whose onset lies after the end of the audio are dropped from the
  TextGrid and the transcript (some copies of Emo-DB hold clips cut to a fixed length;
  Labels/emodb_info.csv flags them as Truncated). A file whose syllable file is missing,
  empty or has fewer syllables than words gets its words spread over the voiced span in
  proportion to their length (reported; in the shared copy: 13a01Wb, empty syllable file).
- Dimensional labels: category -> PAD point (Mehrabian-style; valence, arousal,
  dominance on -1..1) mapped to the 1-7 scale as 4 + 3x:
      anger W -.51/.59/.25, boredom L -.65/-.62/-.33, disgust E -.60/.35/.11,
      fear A -.64/.60/-.43, happiness F .76/.48/.35, sadness T -.63/-.27/-.33,
      neutral N 0/0/0.
  Consensus EmoAct/EmoVal/EmoDom = these values (default; `--consensus raters` uses the
  mean of the simulated raters instead). EmoClass = MSP letter of the category
  (W->A, T->S, F->H, E->D, A->F, N->N, L->O: MSP has no boredom class, EmoDetail says
  "Other; Bored").
- Per-annotator ratings (Labels/labels_detailed.csv, v1.11 EmoDetail form): 10 simulated
  raters per utterance out of a pool of 20 (Emo-DB's perception test had 20 listeners),
  each with a persistent bias N(0, 0.3) per attribute. Agreement follows the listener
  recognition rate r (erkannt/100 in erkennung.txt): a rater's rating is
  round(value + bias + N(0, 0.3 + 3 (1 - r))) clipped to 1..7 (sd 0.3 at r = 100 %, 0.9
  at 80 %, the lowest rate among the 535 utterances), and he names the intended category
  with probability r (another one otherwise). Well recognised utterances thus get tight
  ratings, ambiguous ones spread out.
- Splits (speaker-disjoint): Test1 = --test-speakers (default 03,08), Development =
  --dev-speakers (default 09,10), Train = the other six. --loso SPK: Test1 = SPK,
  Development = the next speaker of the list 03 08 09 10 11 12 13 14 15 16 (cyclic).
- Labels/emodb_info.csv keeps speaker, sentence code, emotion, recognition and naturalness.
- Labels/labels_consensus.csv also holds Category (anger, boredom, ...), LabelSource = derived (the
  dimensional values come from the category table, corpora/common.py), DerivedFrom = intended category and
  Duration; labels_detailed.csv marks its rows LabelSource = simulated.
- Labels/folds.csv: 5 speaker-disjoint folds of 2 speakers (pairs 03,08 | 09,10 | 11,12 | 13,14 | 15,16);
  fold k tests pair k and validates on pair k+1 (cyclic); fold 1 is the default split above.
"""
import difflib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr
from tqdm import tqdm

from audio import NOTE_KINDS, wav_claimed_seconds
from corpora.common import CATEGORY_PAD, TRUNCATED_SECONDS, Report, rotation_folds
from corpus import emo_detail, publish_dir, refuse_existing, staged_dir, write_json, write_labels, write_textgrid
from demo_corpus import SECONDARY
from outputs import check_replaced_folder

SR = 16000
SPEAKERS = {"03": "Male", "08": "Female", "09": "Female", "10": "Male", "11": "Male",
            "12": "Male", "13": "Female", "14": "Female", "15": "Male", "16": "Female"}
SENTENCES = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Blatt Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
# letter: (English name, MSP class, MSP letter, (valence, arousal, dominance) on -1..1 from corpora/common.py)
EMOTIONS = {letter: (name, cls, msp, CATEGORY_PAD[name]) for letter, name, cls, msp in [
    ("W", "anger", "Angry", "A"), ("L", "boredom", "Other", "O"), ("E", "disgust", "Disgust", "D"),
    ("A", "fear", "Fear", "F"), ("F", "happiness", "Happy", "H"), ("T", "sadness", "Sad", "S"),
    ("N", "neutral", "Neutral", "N")]}
NAME_RE = re.compile(r"^(\d\d)([ab]\d\d)([WLEAFTN])([a-z])$")
N_RATERS, POOL = 10, 20
AUDIO_SUFFIXES = (".wav", ".flac")


def pad_labels(letter):
    """Emo-DB emotion letter -> (EmoAct, EmoVal, EmoDom) on 1-7 (4 + 3x)."""
    v, a, d = EMOTIONS[letter][3]
    return round(4 + 3 * a, 2), round(4 + 3 * v, 2), round(4 + 3 * d, 2)


def splits(test="03,08", dev="09,10", loso=None):
    """-> {speaker: 'Train'|'Development'|'Test1'}; raises ValueError on unknown/overlapping ids."""
    order = list(SPEAKERS)
    if loso is not None:
        loso = loso.zfill(2)
        if loso not in SPEAKERS:
            raise ValueError(f"--loso {loso}: unknown speaker (known: {' '.join(order)})")
        test, dev = [loso], [order[(order.index(loso) + 1) % len(order)]]
    else:
        test = [s.strip().zfill(2) for s in test.split(",") if s.strip()]
        dev = [s.strip().zfill(2) for s in dev.split(",") if s.strip()]
        dev = [s for s in dev if s not in test] if dev else []
    for s in test + dev:
        if s not in SPEAKERS:
            raise ValueError(f"speaker {s}: unknown (known: {' '.join(order)})")
    if not test:
        raise ValueError("no test speaker given")
    out = {s: "Train" for s in order}
    out.update({s: "Development" for s in dev})
    out.update({s: "Test1" for s in test})
    if "Train" not in out.values():
        raise ValueError("no speaker left for Train")
    return out


def read_recognition(path):
    """erkennung.txt (ISO-8859-1, tab separated, decimal comma) -> {name: (recognised %, natural %)}."""
    out = {}
    if not Path(path).exists():
        return out
    for line in Path(path).read_text(encoding="latin-1").splitlines()[1:]:
        f = [x.replace("\xa0", " ").strip() for x in line.split("\t")]
        if len(f) >= 4 and f[1].endswith(".wav"):
            try:
                out[f[1][:-4]] = (float(f[2].replace(",", ".")), float(f[3].replace(",", ".")))
            except ValueError:
                pass
    return out


def read_silb(path):
    """-> ([(start, end, syllable or '(' for a pause)], end of speech) or (None, None)."""
    try:
        rows = [ln.split(None, 1) for ln in Path(path).read_text(encoding="latin-1").splitlines() if ln.strip()]
        rows = [(float(t), s.strip()) for t, s in rows]
    except (OSError, ValueError):
        return None, None
    if len(rows) < 2:
        return None, None
    sy = [(t, rows[k + 1][0], s) for k, (t, s) in enumerate(rows[:-1])]
    return sy, rows[-1][0]


def _norm(s):
    return re.sub(r"[^a-zäöüß]", "", s.lower())


def group_syllables(syllables, words):
    """Dynamic programming: contiguous non-empty syllable runs -> words. -> [(start, end, word)]."""
    syl = [x for x in syllables if x[2] != "("]
    n, m = len(words), len(syl)
    if m < n or n == 0:
        return None
    wn, sn = [_norm(w) for w in words], [_norm(s[2]) for s in syl]
    inf = float("inf")
    cost = np.full((n + 1, m + 1), inf)
    back = np.zeros((n + 1, m + 1), int)
    cost[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(i, m - (n - i) + 1):
            for k in range(i - 1, j):  # word i-1 takes syllables k..j-1
                if cost[i - 1, k] == inf:
                    continue
                c = cost[i - 1, k] + 1 - difflib.SequenceMatcher(None, "".join(sn[k:j]), wn[i - 1]).ratio()
                c += 0.1 * (sn[k][:1] != wn[i - 1][:1])  # a word starts with its own first letter
                if c < cost[i, j]:
                    cost[i, j], back[i, j] = c, k
    out, j = [], m
    for i in range(n, 0, -1):
        k = back[i, j]
        out.append((syl[k][0], syl[j - 1][1], words[i - 1]))
        j = k
    return out[::-1]


def spread_words(x, sr, words):
    """Fallback alignment: words over the voiced span, proportional to their length."""
    hop = sr // 100
    e = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, 1))
    v = np.flatnonzero(e > 0.1 * e.max())
    t0, t1 = (v[0] / 100, (v[-1] + 1) / 100) if len(v) else (0.0, len(x) / sr)
    c = np.cumsum([0] + [len(w) + 1 for w in words]) / (sum(len(w) + 1 for w in words))
    return [(t0 + (t1 - t0) * c[k], t0 + (t1 - t0) * c[k + 1], w) for k, w in enumerate(words)]


def scan(src):
    """-> (sorted [(name, speaker, code, letter, path)], [problems]) of the Emo-DB wav/ folder. Every file is
    an item or a problem: .wav in any case and .flac are read (the audio is resampled anyway); a file of
    another kind, a name that does not follow SSTTTEV and a name held by two files (03a01Fa.wav and
    03a01Fa.flac: which one is the recording is unclear) are listed. Hidden files (.DS_Store) are ignored."""
    wav = Path(src) / "wav"
    if not wav.is_dir():
        raise FileNotFoundError(f"{src}: no wav/ folder; pass the Emo-DB root (holding wav/, silb/, erkennung.txt)")
    found, bad = {}, []
    for p in sorted(wav.iterdir()):
        if p.name.startswith("."):
            continue
        if not p.is_file() or p.suffix.lower() not in AUDIO_SUFFIXES:
            bad.append(f"{p.name}: not a .wav or .flac audio file (skipped)")
            continue
        m = NAME_RE.match(p.stem)
        if not m or m.group(1) not in SPEAKERS or m.group(2) not in SENTENCES:
            bad.append(f"{p.name}: name does not follow SSTTTEV (skipped)")
            continue
        found.setdefault(p.stem, []).append(p)
    items = []
    for stem, paths in sorted(found.items()):
        if len(paths) > 1:
            bad.append(f"{stem}: {len(paths)} files of that name ({', '.join(q.name for q in paths)}); which one is "
                       f"the recording is unclear (skipped)")
            continue
        m = NAME_RE.match(stem)
        items.append((stem, m.group(1), m.group(2), m.group(3), paths[0]))
    return items, bad


def _ratings(letter, rec, rng, bias):
    """10 simulated raters: (worker id, class, secondary, A, V, D)."""
    act, val, dom = pad_labels(letter)
    sd = 0.3 + 3.0 * (1 - rec)
    who = np.sort(rng.choice(POOL, N_RATERS, replace=False))
    x = np.array([act, val, dom]) + bias[who] + rng.normal(0, sd, (N_RATERS, 3))
    x = np.clip(np.rint(x), 1, 7)
    out = []
    for q, (a, v, d) in zip(who, x):
        lt = letter if rng.random() < rec else rng.choice([k for k in EMOTIONS if k != letter])
        cls = EMOTIONS[lt][1]
        sec = ["Bored"] if lt == "L" else list(rng.choice(SECONDARY[cls], int(rng.integers(1, 3)), replace=False))
        out.append((f"WORKER{q + 1:05d}", cls, sec, float(a), float(v), float(d)))
    return out


def _convert_one(src, tmp, item, split, recog, seed, bias, consensus, problems):
    """Audio, transcript and TextGrid of one Emo-DB file into `tmp` -> (consensus row, detail rows, info row,
    truncated), or None when the audio is unreadable (reported in `problems`)."""
    name, spk, code, letter, path = item
    claim = wav_claimed_seconds(path)
    if claim and claim[0] - claim[1] > TRUNCATED_SECONDS:
        problems.append(f"{path.name}: {NOTE_KINDS['truncated']} claims: {claim[1]:.2f} s of {claim[0]:.2f} s "
                        f"present (truncated copy); skipped")
        return None
    try:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - report and skip unreadable audio
        problems.append(f"{path.name}: unreadable ({e}); skipped")
        return None
    if not x.any():
        problems.append(f"{path.name}: {NOTE_KINDS['digital_silence']} (all samples zero), not speech; skipped")
        return None
    x = x.mean(1)
    y = soxr.resample(x, sr, SR, quality="HQ") if sr != SR else x
    y = np.clip(y, -1, 1).astype(np.float32)
    dur = len(y) / SR
    sf.write(str(tmp / "Audios" / f"{name}.wav"), y, SR, subtype="PCM_16")
    text = SENTENCES[code]
    words = [w.strip(",.?!") for w in text.split()]
    syl, end = read_silb(src / "silb" / f"{name}.silb")
    aligned = group_syllables(syl, words) if syl else None
    if aligned is None:
        problems.append(f"{name}: syllable file missing/empty/too short -> words spread over voiced span")
        aligned = spread_words(y, SR, words)
    audible = [(s, min(e, dur), w) for s, e, w in aligned if s < dur - 0.05]
    truncated = len(audible) < len(words)
    if truncated:  # the recording stops before the sentence ends: transcribe what is audible
        text = " ".join(w for _, _, w in audible)
    (tmp / "Transcripts" / f"{name}.txt").write_text(text + "\n", encoding="utf-8")
    write_textgrid(tmp / "ForceAligned" / f"{name}.TextGrid", audible, dur)
    rec, nat = recog.get(name, (None, None))
    if rec is None:
        problems.append(f"{name}: not in erkennung.txt -> recognition 0.8 assumed")
    r = (rec if rec is not None else 80.0) / 100
    fn = f"{name}.wav"
    rats = _ratings(letter, r, np.random.default_rng([seed, int(spk), int(code[1:]), ord(code[0]), ord(letter),
                                                       ord(name[-1])]), bias)
    det = [(fn, emo_detail(wid, cls, sec, a, v, d), "simulated") for wid, cls, sec, a, v, d in rats]
    if consensus == "raters":
        act, val, dom = (round(float(np.mean([q[k] for q in rats])), 6) for k in (3, 4, 5))
    else:
        act, val, dom = pad_labels(letter)
    cons = (fn, EMOTIONS[letter][2], act, val, dom, int(spk), SPEAKERS[spk], split, EMOTIONS[letter][0], "derived",
            "intended category", round(dur, 4))
    info = (fn, spk, code, letter, EMOTIONS[letter][0], rec, nat, round(dur, 4), round(end, 4) if end else None,
            truncated)
    return cons, det, info, truncated


def fold_table(cons):
    """Labels/folds.csv rows: the 5 folds of speaker pairs (fold 1 = the default split)."""
    order = list(SPEAKERS)
    folds = rotation_folds([order[i:i + 2] for i in range(0, len(order), 2)])
    f = pd.DataFrame({"FileName": [c[0] for c in cons], "SpkrID": [c[5] for c in cons]})
    for k, spk in enumerate(folds, 1):
        f[f"fold{k}"] = f["SpkrID"].map({int(s): part for s, part in spk.items()})
    return f


def _write_tables(tmp, cons, det, info, split_of, seed, consensus, problems):
    write_labels(tmp, cons, det, extra_cols=["Category", "LabelSource", "DerivedFrom", "Duration"],
                 detail_extra_cols=["LabelSource"])
    fold_table(cons).to_csv(tmp / "Labels" / "folds.csv", index=False)
    rep = Report()
    for p in problems:
        _add(rep, p)
    rep.write(tmp)
    cols = ["FileName", "Speaker", "Sentence", "EmoLetter", "Emotion", "Recognition", "Naturalness",
            "Duration", "SpeechEnd", "Truncated"]
    pd.DataFrame(info, columns=cols).to_csv(tmp / "Labels" / "emodb_info.csv", index=False)
    spl = {k: sorted(s for s, v in split_of.items() if v == k) for k in ("Train", "Development", "Test1")}
    write_json(tmp / "build_info.json", dict(generator="prepare_emodb.py", seed=seed, consensus=consensus,
                                              splits=spl, n=len(cons), problems=problems))
    (tmp / "README.md").write_text(
        "# Emo-DB in the MSP-Podcast layout\n\nBuilt by `prepare_emodb.py` from the Berlin Database of "
        "Emotional Speech (F. Burkhardt et al., Interspeech 2005; freely distributed for research).\n"
        f"Splits (speaker-disjoint): {spl}.\n\n## Derivation\n```\n{__doc__}```\n", encoding="utf-8")


def prepare(src, out, test="03,08", dev="09,10", loso=None, speakers=None, consensus="table", seed=0,
            force=False, progress=True):
    """Build the MSP-layout Emo-DB corpus at `out` (atomically); -> (Path, problems list)."""
    src, out = Path(src), Path(out)
    check_replaced_folder(out, 'out', [(src, 'the Emo-DB source')])
    refuse_existing(out, force)
    split_of = splits(test, dev, loso)
    items, problems = scan(src)
    if speakers:
        keep = {s.strip().zfill(2) for s in speakers.split(",")}
        items = [it for it in items if it[1] in keep]
    if not items:
        raise FileNotFoundError(f"{src}/wav: no Emo-DB files found")
    recog = read_recognition(src / "erkennung.txt")
    rng = np.random.default_rng(seed)
    bias = rng.normal(0, 0.3, (POOL, 3))
    with staged_dir(out, ("Audios", "Transcripts", "ForceAligned", "Labels")) as tmp:
        cons, det, info, n_trunc = [], [], [], 0
        for item in tqdm(items, desc="Emo-DB", unit="utt", disable=not progress):
            res = _convert_one(src, tmp, item, split_of[item[1]], recog, seed, bias, consensus, problems)
            if res is None:
                continue
            c, d, i, truncated = res
            cons.append(c)
            det += d
            info.append(i)
            n_trunc += truncated
        empty = sorted({"Train", "Development", "Test1"} - {c[7] for c in cons})
        if empty:
            problems.append(f"no utterances in split(s) {empty}: --speakers holds none of their speakers")
        if n_trunc:
            problems.append(f"{n_trunc} recordings end before their sentence does (audio shorter than the "
                            f"syllable file's end of speech): transcripts and TextGrids hold the audible words")
        _write_tables(tmp, cons, det, info, split_of, seed, consensus, problems)
        publish_dir(tmp, out)
    return out, problems


def convert(src, out, audio="resample", force=False, progress=True, speakers=None, seed=0, consensus="table", **_):
    """prepare_corpus.py emodb: prepare() with the default split (= fold 1) and its folds; audio is always
    resampled to 16 kHz (the syllable alignment and truncation check read the audio) -> (Path, Report)."""
    wav = Path(src) / "wav"
    if not wav.is_dir() or not any(NAME_RE.match(p.stem) and p.suffix.lower() in AUDIO_SUFFIXES for p in wav.iterdir()):
        from corpora.common import LayoutError
        raise LayoutError(f"{src} is not Emo-DB as distributed: expected wav/SSTTTEV.wav files (e.g. wav/03a01Fa.wav), "
                          f"silb/*.silb and erkennung.txt")
    out, problems = prepare(src, out, speakers=speakers, consensus=consensus, seed=seed, force=force,
                            progress=progress)
    rep = Report()
    for p in problems:
        _add(rep, p)
    return out, rep


def _add(rep, problem):
    """A prepare() problem line into the report: 'NAME: reason' (a file) or a general note."""
    item, sep, reason = problem.partition(": ")
    if not sep or " " in item:
        item, reason = "emodb", problem
    (rep.skip if "skipped" in reason else rep.note)(item, reason)
