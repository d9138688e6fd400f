"""The embedded demo corpus: synthetic speech in the MSP-Podcast layout (docs/corpus.md), built by
`build()`; `make_demo_corpus.py` is its command line, `ensure_demo_corpus` builds it on first use
(the corpus reader, corpus.py, knows nothing of this builder).

Speech comes from eSpeak NG (the `espeakng-loader` PyPI wheel ships the library and
its voice data; a system libespeak-ng is used when the wheel is missing), driven
through ctypes. Each utterance is read by one of 12 voices (eSpeak voice variant +
pitch base = speaker), speaker-disjoint splits Train (8 speakers) / Development (2)
/ Test1 (2).

Emotion model:
- valence comes from the text (sentence bank `demo_text.py`, each sentence with an
  intended valence 1-7) and shifts prosody a little;
- arousal and dominance drive prosody: speaking rate, pitch, pitch range, volume;
- arousal varies WITHIN the utterance: the sentence is read in 2-4 segments
  (word groups) whose arousal follows a trajectory (flat, rising, falling, peak).
  The true arousal of every segment, with its start/end time, is saved in
  `ChunkTruth/chunk_truth.json` (also per 1-s window);
- 5-8 simulated raters per utterance rate A/V/D as integers 1-7 around the true
  values (duration-weighted arousal) with a per-rater bias and noise; consensus =
  mean of the raters (v1.11 `EmoDetail` detailed labels + `labels_consensus.csv`).
With `text_source` (EmoBank) the text is EmoBank sentences and the labels are the
REAL per-rater reader ratings (1-5, mapped to 1-7 as 1 + 1.5(x-1)); prosody then
follows those labels.

Everything is seeded: the same seed gives byte-identical files. The corpus is built
in a hidden temp folder next to the target and renamed into place at the end, so an
interrupted build never leaves a half corpus behind.
"""
import ctypes
import ctypes.util
import os
import pickle
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr
from tqdm import tqdm

from corpus import (
    DEFAULT_CORPUS,
    REPO,
    CorpusError,
    emo_detail,
    publish_dir,
    refuse_existing,
    staged_dir,
    window_truth,
    write_json,
    write_labels,
    write_textgrid,
)
from demo_text import SENTENCES
from errors import ToolkitError

try:   # optional: the wheel that ships libespeak-ng and its voices; else a system libespeak-ng is used
    import espeakng_loader
except ImportError:
    espeakng_loader = None

SR = 16000
VERSION = 1  # bump when the generator changes what it writes

# SpkrID, eSpeak voice, pitch base (eSpeak 0-100), gender, rate factor, loudness gain, split
SPEAKERS = [
    (101, "en-us+m1", 46, "Male", 1.00, 1.00, "Train"),
    (102, "en+f2", 52, "Female", 0.97, 0.95, "Train"),
    (103, "en-us+m3", 40, "Male", 1.05, 0.90, "Train"),
    (104, "en-us+f1", 56, "Female", 1.03, 1.05, "Train"),
    (105, "en+m2", 50, "Male", 0.95, 1.10, "Train"),
    (106, "en-us+f3", 48, "Female", 1.00, 0.85, "Train"),
    (107, "en-gb-x-rp+m5", 44, "Male", 0.98, 0.95, "Train"),
    (108, "en-us+m6", 54, "Male", 1.04, 1.00, "Train"),
    (109, "en-us+f4", 50, "Female", 0.96, 1.00, "Development"),
    (110, "en+m4", 45, "Male", 1.02, 0.92, "Development"),
    (111, "en-us+f5", 54, "Female", 1.01, 0.97, "Test1"),
    (112, "en+m7", 48, "Male", 0.99, 1.05, "Test1"),
]
TRAJECTORIES = ["flat", "rising", "falling", "peak"]
CLASS_LETTER = {"Angry": "A", "Sad": "S", "Happy": "H", "Surprise": "U", "Fear": "F",
                "Disgust": "D", "Contempt": "C", "Neutral": "N", "Other": "O"}
SECONDARY = {"Angry": ["Frustrated", "Annoyed", "Disgust"], "Sad": ["Disappointed", "Depressed", "Concerned"],
             "Happy": ["Amused", "Excited", "Happy"], "Surprise": ["Excited", "Confused", "Amused"],
             "Fear": ["Concerned", "Confused", "Frustrated"], "Disgust": ["Annoyed", "Contempt", "Frustrated"],
             "Contempt": ["Annoyed", "Disgust", "Frustrated"], "Neutral": ["Neutral", "Concerned", "Amused"],
             "Other": ["Confused", "Concerned", "Neutral"]}
N_WORKERS_POOL = 60  # simulated annotator pool (each has a persistent bias)


# ---------------------------------------------------------------- eSpeak NG via ctypes
class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))
_EV_WORD, _SYNCHRONOUS, _DONT_EXIT = 1, 2, 0x8000
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4


def _espeak_paths():
    if espeakng_loader is not None:
        return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()
    lib = ctypes.util.find_library("espeak-ng")
    if lib is None:
        raise ToolkitError("eSpeak NG not found: `pip install espeakng-loader` (ships the library and "
                           "voice data) or install the system package espeak-ng")
    return lib, None


class ESpeak:
    """One eSpeak NG engine per process (the library keeps global state)."""

    def __init__(self):
        lib_path, data_path = _espeak_paths()
        self.lib = ctypes.CDLL(lib_path)
        self.sr = self.lib.espeak_Initialize(_SYNCHRONOUS, 0, data_path.encode() if data_path else None, _DONT_EXIT)
        if self.sr <= 0:
            raise RuntimeError(f"espeak_Initialize failed for {lib_path} (data {data_path})")
        self._buf, self._events = [], []
        self._cb = _CALLBACK(self._collect)  # keep a reference: ctypes must not free it
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self._voice = None

    def _collect(self, wav, n, events):
        if n > 0:
            self._buf.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:
            e = events[i]
            if e.type == _EV_WORD:
                self._events.append((e.text_position - 1, e.length, e.audio_position / 1000.0))
            i += 1
        return 0

    def synth(self, text, voice, rate, pitch, prange, volume):
        """-> (int16 samples at self.sr, [(char offset, length, time s)] word events)."""
        if voice != self._voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
            self._voice = voice
        for p, v in ((_RATE, rate), (_VOLUME, volume), (_PITCH, pitch), (_RANGE, prange)):
            self.lib.espeak_SetParameter(p, int(round(v)), 0)
        if hasattr(self.lib, "espeak_ng_SetRandSeed"):
            self.lib.espeak_ng_SetRandSeed(1)
        self._buf, self._events = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, CHARS_UTF8
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on {text!r}")
        x = np.concatenate(self._buf) if self._buf else np.zeros(0, np.int16)
        return x, list(self._events)


_ENGINE = {}


def engine():
    pid = os.getpid()
    if pid not in _ENGINE:
        _ENGINE.clear()
        _ENGINE[pid] = ESpeak()
    return _ENGINE[pid]



# ---------------------------------------------------------------- rater categories
def emo_class(a, v, d, rng):
    """A rater's primary category from his own A/V/D rating (MSP-Podcast category names)."""
    if v <= 2 or (v < 3.5 and (a <= 3 or a >= 5.5)):
        if a >= 4.5:
            return "Angry" if d >= 4 else "Fear"
        return "Contempt" if d >= 5 else "Sad"
    if v >= 6 or (v > 4.5 and a >= 5):
        return "Surprise" if a >= 6 and rng.random() < 0.3 else "Happy"
    return "Disgust" if v < 3.5 and a >= 5 and rng.random() < 0.3 else "Neutral"




def consensus_class(classes):
    """Plurality of the raters' primary categories as an MSP letter; 'X' when tied."""
    vals, counts = np.unique(classes, return_counts=True)
    top = vals[counts == counts.max()]
    return CLASS_LETTER[top[0]] if len(top) == 1 else "X"




# ---------------------------------------------------------------- planning (all randomness here)
def _bin(v):
    return 0 if v < 3.5 else 1 if v <= 4.5 else 2


def _prosody(act, dom, val, spk):
    _, _, pitch0, _, rate_f, _, _ = spk
    za, zd, zv = (act - 4) / 3, (dom - 4) / 3, (val - 4) / 3
    rate = np.clip(rate_f * (165 + 65 * za + 12 * zd), 85, 400)
    pitch = np.clip(pitch0 + 20 * za + 4 * zv - 6 * zd, 0, 100)
    prange = np.clip(45 + 35 * za + 8 * zv, 0, 100)
    volume = np.clip(85 + 15 * za + 8 * zd, 20, 130)
    return float(rate), float(pitch), float(prange), float(volume)


def _split_words(words, n_seg):
    """Cut a word list into n_seg groups of >= 2 words, preferring cuts after punctuation."""
    n = len(words)
    cuts, prev = [], 0
    for k in range(1, n_seg):
        ideal = round(k * n / n_seg)
        cands = [c for c in range(ideal - 1, ideal + 2) if prev + 2 <= c <= n - 2 * (n_seg - k)]
        if not cands:
            cands = [max(prev + 2, min(ideal, n - 2 * (n_seg - k)))]
        punct = [c for c in cands if words[c - 1][-1] in ",;:.!?"]
        c = min(punct or cands, key=lambda c: abs(c - ideal))
        cuts.append(c)
        prev = c
    bounds = [0] + cuts + [n]
    return [words[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _segment_arousal(traj, n_seg, a0, delta, weights, peak=1):
    if traj == "flat":
        shape = np.zeros(n_seg)
    elif traj == "rising":
        shape = np.linspace(-0.5, 0.5, n_seg)
    elif traj == "falling":
        shape = np.linspace(0.5, -0.5, n_seg)
    else:  # peak: one high segment inside
        shape = np.full(n_seg, -0.5)
        shape[peak] = 0.5
    shape = shape - np.average(shape, weights=weights)  # keep the (length-weighted) mean at a0
    return np.clip(a0 + delta * shape, 1.2, 6.8)


def _load_emobank(src):
    src = Path(src)
    d = src / "corpus" if (src / "corpus" / "emobank.csv").exists() else src
    if not (d / "emobank.csv").exists() or not (d / "individual_reader_ratings.csv").exists():
        raise CorpusError(f"{src}: no EmoBank here (need emobank.csv and individual_reader_ratings.csv, "
                          f"e.g. ../shared/datasets/emobank or its corpus/ folder)")
    eb = pd.read_csv(d / "emobank.csv")
    rr = pd.read_csv(d / "individual_reader_ratings.csv")
    return eb, rr


def plan(n=420, seed=0, text_source=None):
    """All random choices of a build -> list of utterance jobs (picklable dicts)."""
    rng = np.random.default_rng(seed)
    spk_of = rng.permutation(np.arange(n) % len(SPEAKERS))
    texts = []  # (text, valence, arousal or None, dominance or None, ratings or None, source id)
    if text_source is None:
        pools = [[k for k, s in enumerate(SENTENCES) if _bin(s[1]) == b] for b in range(3)]
        order = rng.permutation(len(SENTENCES))
        for i in range(n):
            k = int(order[i % len(order)])
            t, v = SENTENCES[k]
            src, words = f"demo_text:{k}", len(t.split())
            if (words < 9 and rng.random() < 0.6) or rng.random() < 0.35:
                pool = [q for q in pools[_bin(v)] if q != k and len(SENTENCES[q][0].split()) + words <= 26]
                q = int(pool[rng.integers(len(pool))])
                t, v, src = f"{t} {SENTENCES[q][0]}", (v + SENTENCES[q][1]) / 2, f"{src}+{q}"
            texts.append((t, v, None, None, None, src))
    else:
        eb, rr = _load_emobank(text_source)
        rr = rr.dropna()
        rr = rr.sort_values("id", kind="stable")
        ids, start = np.unique(rr["id"].to_numpy(str), return_index=True)
        groups = dict(zip(ids, np.split(rr[["V", "A", "D"]].to_numpy(float), start[1:])))
        eb = eb[eb["id"].isin(groups) & eb["text"].astype(str).str.fullmatch(r"[A-Za-z0-9 ,.;:!?'\-]+")]
        nw = eb["text"].str.split().str.len()
        eb = eb[(nw >= 6) & (nw <= 22)].sort_values("id").reset_index(drop=True)
        means = np.stack([groups[k].mean(0) for k in eb["id"]])
        w = 0.2 + np.abs(means - 3).sum(1)  # favour emotional sentences so labels cover the range
        split_of = {"Train": "train", "Development": "dev", "Test1": "test"}
        free = np.ones(len(eb), bool)
        for i in range(n):
            part = split_of[SPEAKERS[spk_of[i]][6]]
            idx = np.flatnonzero((eb["split"] == part).to_numpy() & free)
            if len(idx) == 0:
                raise CorpusError(f"{text_source}: not enough EmoBank '{part}' sentences for n={n}")
            j = idx[rng.choice(len(idx), p=w[idx] / w[idx].sum())]
            free[j] = False
            r7 = 1 + 1.5 * (groups[eb.at[j, "id"]] - 1)  # 1-5 -> 1-7
            texts.append((eb.at[j, "text"], r7[:, 0].mean(), r7[:, 1].mean(), r7[:, 2].mean(), r7.tolist(),
                          f"emobank:{eb.at[j, 'id']}"))
    jobs, count = [], {}
    for i, (text, val, act, dom, ratings, src) in enumerate(texts):
        r = np.random.default_rng([seed, i])
        spk = SPEAKERS[spk_of[i]]
        count[spk[0]] = count.get(spk[0], 0) + 1
        text = " ".join(str(text).split())
        words = text.split()
        traj = TRAJECTORIES[r.integers(4)]
        n_max = max(2, min(4, len(words) // 3))
        n_seg = int(r.integers(2, n_max + 1))
        if traj == "peak" and n_seg < 3:
            traj = "rising" if r.random() < 0.5 else "falling"
        segs = _split_words(words, n_seg)
        a0 = act if act is not None else r.uniform(2.2, 5.8)
        if dom is None:
            dom = float(np.clip(4 + 0.6 * (a0 - 4) + 0.25 * (val - 4) + r.normal(0, 0.6), 1.5, 6.5))
        delta = 0.0 if traj == "flat" else r.uniform(1.5, 3.0)
        seg_act = _segment_arousal(traj, n_seg, a0, delta, [len(" ".join(s)) for s in segs],
                                   peak=int(r.integers(1, n_seg - 1)) if n_seg >= 3 else 0)
        jobs.append(dict(idx=i, name=f"MSP-PODCAST_{spk[0]:04d}_{count[spk[0]]:04d}", spk=spk, text=text,
                         segments=[(" ".join(s), float(a)) for s, a in zip(segs, seg_act)], traj=traj,
                         val=float(val), dom=float(dom), ratings=ratings, source=src, seed=seed,
                         pauses=r.uniform(0.08, 0.3, n_seg - 1).tolist(), lead=float(r.uniform(0.1, 0.3)),
                         tail=float(r.uniform(0.15, 0.4)), gain_db=float(r.normal(0, 2.0))))
    return jobs


# ---------------------------------------------------------------- synthesis of one utterance (worker)
def _voiced(x, sr, thr=150.0):
    """Boolean per 10-ms frame: RMS above thr (int16 scale)."""
    hop = sr // 100
    m = len(x) // hop
    f = x[: m * hop].astype(np.float64).reshape(m, hop)
    return np.sqrt((f ** 2).mean(1)) > thr


def _render(job, scale):
    es = engine()
    sr = es.sr
    spk = job["spk"]
    pieces = [np.zeros(int(job["lead"] * sr), np.float32)]
    t = job["lead"]
    words, segs = [], []
    for k, (text, act) in enumerate(job["segments"]):
        last = k == len(job["segments"]) - 1
        say = text if last or text[-1] in ",;:.!?" else text + ","
        rate, pitch, prange, vol = _prosody(act, job["dom"], job["val"], spk)
        x, events = es.synth(say, spk[1], np.clip(rate * scale, 80, 450), pitch, prange, vol)
        v = _voiced(x, sr)
        if not v.any():
            raise RuntimeError(f"{job['name']}: eSpeak produced silence for {text!r}")
        on, off = np.flatnonzero(v)[[0, -1]]
        a, b = max(0, on * sr // 100 - sr // 50), min(len(x), (off + 1) * sr // 100 + sr * 3 // 100)
        seg = x[a:b].astype(np.float32)
        t0, dur = t, len(seg) / sr
        # word times: tokens of `text` <- eSpeak WORD events (char offset -> token)
        tok_start, pos = [], 0
        for w in text.split(" "):
            tok_start.append(pos)
            pos += len(w) + 1
        starts = [None] * len(tok_start)
        for off_c, _, ts in events:
            j = int(np.searchsorted(tok_start, off_c, side="right") - 1)
            if 0 <= j < len(starts) and (starts[j] is None or ts < starts[j]):
                starts[j] = ts
        known = [(j, s) for j, s in enumerate(starts) if s is not None] or [(0, 0.0)]
        ks, kt = zip(*known)
        starts = np.interp(np.arange(len(starts)), ks, kt)  # tokens without an event: interpolate
        starts = np.clip(starts - a / sr, 0.0, dur)
        vv = _voiced(seg, sr)
        for j, w in enumerate(text.split(" ")):
            s = starts[j]
            e = starts[j + 1] if j + 1 < len(starts) else dur
            fr = np.flatnonzero(vv[int(s * 100): int(e * 100)])
            end = min(e, (int(s * 100) + fr[-1] + 1) / 100) if len(fr) else e
            if e - end < 0.04:
                end = e
            label = w.strip(",;:.!?\"()")
            if label:
                words.append((t0 + s, t0 + max(end, s + 0.01), label))
        pieces.append(seg)
        segs.append((t0, t0 + dur, act))
        t += dur
        if not last:
            pieces.append(np.zeros(int(job["pauses"][k] * sr), np.float32))
            t += len(pieces[-1]) / sr
    pieces.append(np.zeros(int(job["tail"] * sr), np.float32))
    return np.concatenate(pieces), sr, words, segs


def synth_utterance(job, out):
    """Synthesise one planned utterance, write WAV/Transcript/TextGrid under `out`; -> metadata."""
    scale = 1.0
    for _ in range(6):
        x, sr, words, segs = _render(job, scale)
        dur = len(x) / sr
        if dur > 11.8:
            scale *= 1.05 * dur / 11.8
        elif dur < 2.1 and scale > 0.5:
            scale *= 0.8
        else:
            break
    y = soxr.resample(x, sr, SR, quality="HQ") * (0.7 * job["spk"][5] * 10 ** (job["gain_db"] / 20) / 32768.0)
    n_min = int(2.05 * SR)
    if len(y) < n_min:  # very short sentence read fast: pad with silence rather than fail
        y = np.concatenate([y, np.zeros(n_min - len(y))])
    y = y + np.random.default_rng([job["seed"], job["idx"], 2]).normal(0, 2e-4, len(y))  # faint noise floor
    y = np.clip(y, -1, 1).astype(np.float32)
    dur = len(y) / SR
    name = job["name"]
    sf.write(str(out / "Audios" / f"{name}.wav"), y, SR, subtype="PCM_16")
    (out / "Transcripts" / f"{name}.txt").write_text(job["text"] + "\n", encoding="utf-8")
    write_textgrid(out / "ForceAligned" / f"{name}.TextGrid", words, dur)
    return dict(name=name, duration=dur, segments=[(round(s, 4), round(e, 4), round(a, 4)) for s, e, a in segs])


def _work(args):
    """Synthesise one utterance in a child forked from a pristine engine.

    eSpeak NG carries internal state from one message to the next (so the same text
    gives slightly different samples depending on what was spoken before). Forking a
    fresh child from a process whose engine is initialised but has never spoken makes
    every utterance independent of order and worker count -> byte-identical corpora."""
    job, out = args
    if not hasattr(os, "fork"):  # no fork (Windows): still works, but not bit-reproducible
        return synth_utterance(job, Path(out))
    engine()  # initialise here, never speak here
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            payload = pickle.dumps(synth_utterance(job, Path(out)))
        except BaseException as e:  # noqa: BLE001 - hand any failure to the parent
            payload = pickle.dumps(RuntimeError(f"{job['name']}: {type(e).__name__}: {e}"))
        with os.fdopen(w, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"{job['name']}: synthesis process died (status {status})")
    res = pickle.loads(data)
    if isinstance(res, Exception):
        raise res
    return res


# ---------------------------------------------------------------- labels + corpus
def _ratings(job, meta, pool_bias, seed):
    """Simulated raters (demo text) or EmoBank's real reader ratings -> [(worker, A, V, D)]."""
    r = np.random.default_rng([seed, job["idx"], 3])
    if job["ratings"] is not None:
        return [(f"WORKER{k + 1:05d}", a, v, d) for k, (v, a, d) in enumerate(job["ratings"])]
    w = np.array([e - s for s, e, _ in meta["segments"]])
    act = float(np.average([a for _, _, a in meta["segments"]], weights=w))
    true = np.array([act, job["val"], job["dom"]])
    k = int(r.integers(5, 9))
    who = np.sort(r.choice(N_WORKERS_POOL, k, replace=False))
    x = true + pool_bias[who] + r.normal(0, [0.7, 0.8, 0.8], (k, 3))
    x = np.clip(np.rint(x), 1, 7)
    return [(f"WORKER{q + 1:05d}", *map(float, row)) for q, row in zip(who, x)]


README = """# {title}

Generated by `make_demo_corpus.py` (version {version}) with `--n {n} --seed {seed}{src_arg}`.
Same arguments -> byte-identical files. MSP-Podcast layout (v1.11 style):

- `Audios/MSP-PODCAST_<speaker>_<nr>.wav` 16 kHz mono 16-bit PCM, eSpeak NG speech.
- `Transcripts/<name>.txt`, `ForceAligned/<name>.TextGrid` (word tier from eSpeak's word events;
  empty intervals are silence).
- `Labels/labels_consensus.csv` (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set),
  `Labels/labels_detailed.csv` (FileName, EmoDetail `WORKER; class; secondary; A:; V:; D:;`, one row per rating),
  `Labels/source_text.csv` (FileName, trajectory, source of the text).
- `ChunkTruth/chunk_truth.json`: {{FileName: {{"duration", "trajectory", "segments": [{{"start", "end",
  "Act", "Val", "Dom"}}, ...], "times": [1-s window starts], "Act": [true arousal per window]}}}}.
  Arousal is constant within a segment and changes between segments (pauses belong to no segment);
  valence and dominance are constant within an utterance. `evaluate_retrieval.py` scores chunk
  ranking sequences against it.

Speakers (eSpeak voice variant + pitch base), splits are speaker-disjoint:
{speakers}

{labels}
"""

DEMO_LABELS = """Labels: the text (sentences written for this project, `demo_text.py`) carries an intended valence;
arousal (per segment, trajectory flat/rising/falling/peak) and dominance are drawn per utterance and
drive eSpeak's rate, pitch, pitch range and volume. 5-8 simulated raters (pool of 60 with persistent
biases) rate integers 1-7 around the duration-weighted true values; consensus = mean of the raters.
Each rater's category (EmoDetail) follows from his own A/V/D by a fixed rule (`emo_class`); the
consensus EmoClass is their plurality (X when tied)."""

EMOBANK_LABELS = """Text and labels: sentences from EmoBank (S. Buechel and U. Hahn, "EmoBank: Studying the Impact of
Annotation Perspective and Representation Format on Dimensional Emotion Analysis", EACL 2017; and
"Readers vs. Writers vs. Texts: Coping with Different Perspectives of Text Understanding in Emotion
Annotation", LAW 2017), licensed CC-BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).
This corpus is an adaptation (text read by a synthesiser, ratings rescaled) and is shared under the
same licence. The labels are EmoBank's REAL individual reader ratings (1-5) mapped to 1-7 as
1 + 1.5 (x - 1); worker ids are positional within a sentence (EmoBank publishes no rater ids);
consensus = mean. Prosody follows these labels (arousal varies within the utterance around the
rated arousal). Speakers of Train/Development/Test1 read EmoBank train/dev/test sentences.
Categories (EmoDetail, EmoClass) are derived from each rating by a fixed rule (`emo_class`);
EmoBank has no categorical labels."""

LAYOUT_DIRS = ("Audios", "Transcripts", "ForceAligned", "Labels", "ChunkTruth")


def _synthesise(jobs, tmp, workers, progress, desc):
    """Synthesise every planned utterance into `tmp` (in `workers` processes) -> metadata, in job order."""
    args = [(j, str(tmp)) for j in jobs]
    metas = []
    with tqdm(total=len(jobs), desc=f"building {desc}", unit="utt", disable=not progress) as bar:
        if workers > 1:
            with get_context().Pool(workers) as pool:
                for m in pool.imap(_work, args, chunksize=4):
                    metas.append(m)
                    bar.update()
        else:
            for a in args:
                metas.append(_work(a))
                bar.update()
    return metas


def _label_rows(jobs, metas, seed):
    """Rater and consensus rows, source rows and chunk truth of all utterances (sorted as written)."""
    pool_bias = np.random.default_rng([seed, 999]).normal(0, 0.35, (N_WORKERS_POOL, 3))
    cons, det, src, truth = [], [], [], {}
    for job, meta in zip(jobs, metas):
        fn = meta["name"] + ".wav"
        rat = _ratings(job, meta, pool_bias, seed)
        r = np.random.default_rng([seed, job["idx"], 4])
        classes = []
        for wid, a, v, d in rat:
            c = emo_class(a, v, d, r)
            classes.append(c)
            sec = list(r.choice(SECONDARY[c], int(r.integers(1, 3)), replace=False))
            det.append((fn, emo_detail(wid, c, sec, a, v, d)))
        m = np.array([x[1:] for x in rat]).mean(0)
        spk = job["spk"]
        cons.append((fn, consensus_class(classes), round(m[0], 6), round(m[1], 6), round(m[2], 6),
                     spk[0], spk[3], spk[6]))
        src.append((fn, job["traj"], job["source"]))
        times, act = window_truth(meta["segments"], meta["duration"])
        segs = [dict(start=s, end=e, Act=a, Val=round(job["val"], 4), Dom=round(job["dom"], 4))
                for s, e, a in meta["segments"]]
        truth[fn] = dict(duration=round(meta["duration"], 4), trajectory=job["traj"], segments=segs,
                         times=times, Act=act)
    cons.sort()
    det.sort(key=lambda r: r[0])  # stable: rater order within a file is kept
    src.sort()
    return cons, det, src, truth


def _write_tables(tmp, jobs, metas, n, seed, text_source):
    cons, det, src, truth = _label_rows(jobs, metas, seed)
    write_labels(tmp, cons, det)
    pd.DataFrame(src, columns=["FileName", "trajectory", "source"]).to_csv(tmp / "Labels" / "source_text.csv",
                                                                          index=False)
    write_json(tmp / "ChunkTruth" / "chunk_truth.json", truth)
    spk_txt = "\n".join(f"- {s[0]}: `{s[1]}` pitch {s[2]}, {s[3]}, {s[6]}" for s in SPEAKERS)
    (tmp / "README.md").write_text(README.format(
        title="EmoBank TTS corpus" if text_source else "Demo corpus (synthetic)", version=VERSION, n=n,
        seed=seed, src_arg=f" --text-source {Path(text_source).name}" if text_source else "",
        speakers=spk_txt, labels=EMOBANK_LABELS if text_source else DEMO_LABELS), encoding="utf-8")
    write_json(tmp / "build_info.json", dict(generator="make_demo_corpus.py", version=VERSION, n=n, seed=seed,
                                              text_source=Path(text_source).name if text_source else None))


def build(root="data/demo_corpus", n=420, seed=0, text_source=None, workers=2, force=False, progress=True):
    """Build the corpus at `root` (atomically) and return its Path. Existing root: CorpusExistsError unless force
    (the old corpus is swapped out only once the new one is complete)."""
    root = Path(root)
    refuse_existing(root, force)
    if n < 20:
        raise CorpusError(f"n={n}: need at least 20 utterances (speakers x splits)")
    jobs = plan(n, seed, text_source)
    with staged_dir(root, LAYOUT_DIRS) as tmp:
        metas = _synthesise(jobs, tmp, workers, progress, root.name)
        _write_tables(tmp, jobs, metas, n, seed, text_source)
        try:
            publish_dir(tmp, root)
        except OSError:
            if not (root / "Labels" / "labels_consensus.csv").exists():   # else a concurrent build finished first
                raise
    return root


def ensure_demo_corpus(root=DEFAULT_CORPUS):
    """Return the corpus root; build the embedded demo corpus when the default path is missing."""
    root = Path(root)
    default = REPO / DEFAULT_CORPUS
    is_default = str(root) == DEFAULT_CORPUS or root.resolve() == default.resolve()
    if root.exists():
        return root.resolve() if is_default else root
    if is_default:
        if default.exists():   # called from another working directory
            return default
        build(default, seed=0)
        return default
    raise CorpusError(f"corpus folder {root} does not exist; pass --corpus with the MSP-Podcast root "
                      f"(the folder holding Audios/ and Labels/), or leave it out to use the demo corpus "
                      f"{DEFAULT_CORPUS}")
