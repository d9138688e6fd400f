"""MSP-Podcast corpus layout: the reader of every release layout, and the writers the corpus builders share
(docs/corpus.md).

    c = Corpus('path/to/MSP-Podcast')
    c.files('Train'); c.consensus(name, 'Act'); c.rating_lists('Act', 'Train'); c.words(name)

Handles Audio/ or Audios/, Labels|labels|label/labels_consensus.csv (or the ≤v1.9 spelling
labels_concensus.csv), per-annotator labels as labels_detailed.json (v1.6), long-form
labels_detailed.csv (v1.6-v1.10) or EmoDetail strings (v1.11+), Transcripts/ and ForceAligned/
TextGrids. Tables are read lazily and parsed with vectorised pandas code (150k rows in well
under a second); nothing here loops over rows in Python except the JSON format.

Folds: `Corpus(root, fold=3)` takes the splits from Labels/folds.csv column fold3 (written by prepare_corpus.py)
instead of Split_Set; `fold_names()` lists them.

Writing (make_demo_corpus.py, corpora/, make_spliced_set.py): `staged_dir` builds a corpus in a
hidden folder next to its final place and `publish_dir` moves it there when it is complete;
`write_textgrid`, `write_labels` (consensus + v1.11 EmoDetail), `emo_detail`, `write_json` and
`window_truth` (ChunkTruth) write the pieces.
"""
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from errors import ToolkitError

DEFAULT_CORPUS = 'data/demo_corpus'
REPO = Path(__file__).resolve().parent
EMOS = ['Act', 'Dom', 'Val']
EMO_COLS = ['EmoAct', 'EmoVal', 'EmoDom']
LABEL_COLS = ['FileName', 'EmoClass', 'EmoAct', 'EmoVal', 'EmoDom', 'SpkrID', 'Gender', 'Split_Set']
REQUIRED_COLS = ['FileName', 'EmoAct', 'EmoVal', 'EmoDom', 'Split_Set']   # the rest are filled with NaN
RATING_COLS = ['FileName', 'Worker', 'EmoAct', 'EmoVal', 'EmoDom']
RATING_RANGE = (1.0, 7.0)
AUDIO_DIRS = ['Audios', 'Audio', 'audios', 'audio']
LABEL_DIRS = ['Labels', 'labels', 'label', 'Label']
CONSENSUS_NAMES = ['labels_consensus.csv', 'labels_concensus.csv']
DETAILED_NAMES = ['labels_detailed.csv', 'labels_detailed.json']
FOLDS_NAME = 'folds.csv'   # FileName, SpkrID, fold1..foldK (cells Train/Validation/Test or empty), beside the labels
TRANSCRIPT_DIRS = ['Transcripts', 'transcripts', 'Transcript', 'transcript']
TEXTGRID_DIRS = ['ForceAligned', 'forcealigned', 'Force_Aligned', 'ForcedAligned', 'TextGrids']
SILENCE_MARKS = {'', 'sil', 'sp', '<sil>', '{sl}', 'silence', '<eps>'}
USER_SPLITS = ['Train', 'Validation', 'Test']
# release split name (lower case) -> user split; names matching Test<digits> also map to Test
SPLIT_ALIASES = {'train': 'Train', 'training': 'Train',
                 'validation': 'Validation', 'development': 'Validation', 'dev': 'Validation',
                 'valid': 'Validation', 'val': 'Validation', 'test': 'Test', 'testing': 'Test'}
WORKER_ALIASES = ['worker', 'workers', 'workerid', 'worker_id', 'workerids', 'annotator',
                  'annotatorid', 'annotator_id', 'rater', 'raterid', 'rater_id']
EMO_ALIASES = {'EmoAct': ['emoact', 'act', 'arousal', 'a'], 'EmoVal': ['emoval', 'val', 'valence', 'v'],
               'EmoDom': ['emodom', 'dom', 'dominance', 'd']}


class CorpusError(ToolkitError):
    """A corpus that cannot be read; the message names the file and what to do."""


class CorpusExistsError(CorpusError, FileExistsError):
    """A corpus builder's output folder exists already."""


def _is_test1(name):
    return re.fullmatch(r'test[\s_-]*0*1', str(name).strip().lower()) is not None


def user_split(name):
    """Map a release split name (Train, Development, Test1, ...) to Train/Validation/Test or None.
    Test is the published test set: Test1 (or Test/Testing in releases without numbered test sets); Test2,
    Test3, ... map to nothing and are selected by their own name."""
    s = str(name).strip().lower()
    if s in SPLIT_ALIASES:
        return SPLIT_ALIASES[s]
    return 'Test' if _is_test1(s) else None


def split_map(names):
    """{release name: Train|Validation|Test|None} for one release's Split_Set names: `user_split`, except
    that a release holding Test1 keeps Test for Test1 alone."""
    out = {n: user_split(n) for n in names}
    if any(_is_test1(n) for n in names):
        out.update({n: None for n, u in out.items() if u == 'Test' and not _is_test1(n)})
    return out


def _find(parent, names, want_dir=True):
    for n in names:
        p = Path(parent) / n
        if (p.is_dir() if want_dir else p.is_file()):
            return p
    return None


def _num(s):
    """Series of numbers or numeric strings (' 4 ', '4.0', '') -> float64, bad values NaN."""
    if s.dtype.kind in 'fiu':
        return s.astype('float64')
    return pd.to_numeric(s.astype('string').str.strip(), errors='coerce').astype('float64')


def _wav_names(s):
    s = s.astype('string').str.strip()
    return s.where(s.str.lower().str.endswith('.wav'), s + '.wav').astype(object)


def _rename_alias(df, aliases):
    """Rename columns case-insensitively: {'EmoAct': ['act', ...]} -> EmoAct."""
    low = {str(c).strip().lower(): c for c in df.columns}
    ren = {}
    for canon, names in aliases.items():
        for n in [canon.lower()] + list(names):
            if n in low:
                ren[low[n]] = canon
                break
    return df.rename(columns=ren)


def _missing_cols_error(path, missing, found, expected):
    return CorpusError(f"{path}: missing column(s) {missing}; columns found: {list(found)}. "
                       f"Expected columns {expected} (MSP-Podcast layout); fix the header or pass the "
                       f"right corpus root")


# ---------------------------------------------------------------------------------------------
# per-annotator label formats

def parse_emodetail(s):
    """Vectorised parse of v1.11 EmoDetail strings.

    'WORKER00001; Angry; Frustrated, Annoyed; A:5.0; V:2.0; D:6.0;' -> Worker, EmoAct, EmoVal, EmoDom.
    The secondary-emotion field may hold commas or be empty; keys A/V/D may come in any order;
    a missing or non-numeric value gives NaN. Cells holding several records are split.
    """
    s = pd.Series(s, dtype='string').fillna('')
    n_rec = s.str.count(r'(?:^|;)\s*A\s*:')
    multi = n_rec > 1
    if multi.any():   # rare: several annotators in one cell -> split into single records
        parts = s[multi].map(_split_records).explode()
        s = pd.concat([s[~multi], parts.astype('string')]).sort_index(kind='stable')
    out = pd.DataFrame({'Worker': s.str.extract(r'^\s*([^;]*?)\s*;', expand=False)}, index=s.index)
    for key, col in (('A', 'EmoAct'), ('V', 'EmoVal'), ('D', 'EmoDom')):
        out[col] = _num(s.str.extract(rf'(?:^|;)\s*{key}\s*:\s*([^;]*)', expand=False))
    out['Worker'] = out['Worker'].astype(object)
    return out


def _split_records(cell):
    toks, recs, cur, seen = [t.strip() for t in str(cell).split(';')], [], [], False
    for t in toks:
        is_val = re.match(r'^[AVD]\s*:', t) is not None
        if not is_val and seen and t:       # a new worker id after a record's values
            recs.append('; '.join(cur) + ';')
            cur, seen = [], False
        if t or cur:
            cur.append(t)
        seen = seen or is_val
    if cur:
        recs.append('; '.join(cur) + ';')
    return recs


def _read_detailed_csv(path):
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[''], skipinitialspace=True)
    df.columns = [str(c).strip() for c in df.columns]
    df = _rename_alias(df, {'FileName': ['filename', 'file_name', 'file', 'name']})
    if 'FileName' not in df.columns:
        raise _missing_cols_error(path, ['FileName'], df.columns, ['FileName', 'EmoDetail'] +
                                  [' or Worker(s)/WorkerID'] + EMO_COLS)
    low = {c.lower(): c for c in df.columns}
    if 'emodetail' in low:   # v1.11+
        out = parse_emodetail(df[low['emodetail']])
        out.insert(0, 'FileName', df['FileName'].reindex(out.index).values)
        wcol = next((low[a] for a in WORKER_ALIASES if a in low), None)
        if wcol is not None:   # an explicit worker column wins over the id inside the string
            w = df[wcol].reindex(out.index)
            out['Worker'] = w.where(w.notna(), out['Worker']).values
        return out.reset_index(drop=True)
    wcol = next((low[a] for a in WORKER_ALIASES if a in low), None)
    if wcol is None:
        wcol = next((c for c in df.columns if 'worker' in c.lower() or 'annotator' in c.lower()), None)
    df = _rename_alias(df, EMO_ALIASES)
    missing = (['Workers or WorkerID'] if wcol is None else []) + [c for c in EMO_COLS if c not in df.columns]
    if missing:
        raise _missing_cols_error(path, missing, df.columns,
                                  ['FileName', 'Workers|WorkerID'] + EMO_COLS + [' (or one EmoDetail column)'])
    out = pd.DataFrame({'FileName': df['FileName'], 'Worker': df[wcol].astype(object)})
    for c in EMO_COLS:
        out[c] = _num(df[c])
    return out


def _read_detailed_json(path):
    try:
        with open(path, encoding='utf-8-sig') as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise CorpusError(f"{path}: cannot read JSON ({e}); re-download the label file") from None
    if not isinstance(data, dict):
        raise CorpusError(f"{path}: expected {{FileName: {{WorkerID: {{EmoAct, EmoDom, EmoVal}}}}}}, "
                          f"found a {type(data).__name__}")
    names, workers, vals = [], [], {c: [] for c in EMO_COLS}
    for fname, entry in data.items():
        if isinstance(entry, dict) and len(entry) == 1:   # e.g. {"Detailed": {worker: {...}}}
            (k, v), = entry.items()
            if isinstance(v, dict) and v and all(isinstance(x, dict) for x in v.values()) \
                    and not any(c in v for c in EMO_COLS):
                entry = v
        items = entry.items() if isinstance(entry, dict) else \
            [(e.get('WorkerID', e.get('Worker', i)), e) for i, e in enumerate(entry or []) if isinstance(e, dict)]
        for w, r in items:
            if not isinstance(r, dict):
                continue
            names.append(fname)
            workers.append(str(w))
            for c in EMO_COLS:
                vals[c].append(r.get(c, r.get(c[3:], None)))
    out = pd.DataFrame({'FileName': pd.Series(names, dtype=object), 'Worker': pd.Series(workers, dtype=object)})
    for c in EMO_COLS:
        out[c] = _num(pd.Series(vals[c], dtype=object).astype('string'))
    return out


# ---------------------------------------------------------------------------------------------
# Praat TextGrid (long "ooTextFile" and short format)

_TG_TOKEN = re.compile(r'"((?:[^"]|"")*)"|\[\s*\d*\s*\]|(<exists>|<absent>)|'
                       r'(?<![\w.])([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])')


def _read_text(path):
    raw = Path(path).read_bytes()
    if raw[:2] in (b'\xff\xfe', b'\xfe\xff'):
        return raw.decode('utf-16')
    try:
        return raw.decode('utf-8-sig')
    except UnicodeDecodeError:
        return raw.decode('latin-1')


def read_textgrid(path):
    """Parse a Praat TextGrid (long or short text format).

    Returns a list of tiers: {'class', 'name', 'xmin', 'xmax', 'items'}; items are
    (xmin, xmax, text) for IntervalTiers and (time, time, mark) for TextTiers.
    Raises CorpusError naming the file when it is not a TextGrid.
    """
    path = Path(path)
    try:
        text = _read_text(path)
    except OSError as e:
        raise CorpusError(f"{path}: cannot read TextGrid ({e})") from None
    toks = []   # strings, numbers; bracket indices like [1] and key names are skipped
    for m in _TG_TOKEN.finditer(text):
        if m.group(1) is not None:
            toks.append(m.group(1).replace('""', '"'))
        elif m.group(2) is not None:
            toks.append(m.group(2))
        elif m.group(3) is not None:
            toks.append(float(m.group(3)))
    bad = CorpusError(f"{path}: not a readable Praat TextGrid (text format expected); re-export it "
                      f"from Praat or the aligner, or delete it")
    try:
        if toks[:2] != ['ooTextFile', 'TextGrid']:
            raise bad
        i = 4
        if toks[i] == '<absent>':
            return []
        n_tiers, i = int(toks[i + 1]), i + 2
        tiers = []
        for _ in range(n_tiers):
            cls, name, xmin, xmax, n = toks[i:i + 5]
            i += 5
            width = 3 if cls == 'IntervalTier' else 2
            flat = toks[i:i + width * int(n)]
            if len(flat) < width * int(n):
                raise bad
            i += width * int(n)
            if width == 3:
                items = [(float(flat[k]), float(flat[k + 1]), str(flat[k + 2])) for k in range(0, len(flat), 3)]
            else:
                items = [(float(flat[k]), float(flat[k]), str(flat[k + 1])) for k in range(0, len(flat), 2)]
            tiers.append({'class': cls, 'name': name, 'xmin': float(xmin), 'xmax': float(xmax), 'items': items})
        return tiers
    except (IndexError, ValueError, TypeError):
        raise bad from None


def textgrid_words(path):
    """(start, end, word) of the first interval tier; empty, whitespace and sil/sp marks dropped."""
    tiers = [t for t in read_textgrid(path) if t['class'] == 'IntervalTier']
    if not tiers:
        return []
    return [(a, b, w.strip()) for a, b, w in tiers[0]['items'] if w.strip().lower() not in SILENCE_MARKS]


# ---------------------------------------------------------------------------------------------
# writing the layout (the corpus builders)

def _tg_num(x):
    return f"{x:.4f}".rstrip("0").rstrip(".")


def write_textgrid(path, words, duration):
    """Long-format Praat TextGrid, one 'words' tier; gaps become empty (silence) intervals."""
    iv, t = [], 0.0
    for s, e, w in sorted(words):
        s, e = max(s, t), min(e, duration)
        if e - s <= 1e-4:
            continue
        if s - t > 1e-4:
            iv.append((t, s, ""))
        iv.append((s, e, w))
        t = e
    if duration - t > 1e-4 or not iv:
        iv.append((t, duration, ""))
    q = _tg_num
    lines = ['File type = "ooTextFile"', 'Object class = "TextGrid"', "", "xmin = 0 ", f"xmax = {q(duration)} ",
             "tiers? <exists> ", "size = 1 ", "item []: ", "    item [1]:", '        class = "IntervalTier" ',
             '        name = "words" ', "        xmin = 0 ", f"        xmax = {q(duration)} ",
             f"        intervals: size = {len(iv)} "]
    for k, (s, e, w) in enumerate(iv, 1):
        w = w.replace('"', '""')
        lines += [f"        intervals [{k}]:", f"            xmin = {q(s)} ", f"            xmax = {q(e)} ",
                  f'            text = "{w}" ']
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def emo_detail(worker, cls, secondary, a, v, d):
    """One v1.11 EmoDetail record: 'WORKER00001; Angry; Frustrated, Annoyed; A:5.0; V:2.0; D:6.0;'."""
    return f"{worker}; {cls}; {', '.join(secondary)}; A:{a:.1f}; V:{v:.1f}; D:{d:.1f};"


def write_labels(root, consensus_rows, detail_rows, extra_cols=(), detail_extra_cols=()):
    """labels_consensus.csv (FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set, then
    `extra_cols`) and v1.11-style labels_detailed.csv (FileName, EmoDetail, then `detail_extra_cols`), one row
    per rating."""
    lab = Path(root) / "Labels"
    lab.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(consensus_rows, columns=LABEL_COLS + list(extra_cols)).to_csv(
        lab / "labels_consensus.csv", index=False, float_format="%.6g")
    pd.DataFrame(detail_rows, columns=["FileName", "EmoDetail"] + list(detail_extra_cols)).to_csv(
        lab / "labels_detailed.csv", index=False)


def write_json(path, obj):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def window_truth(segments, duration, win=1.0):
    """ChunkTruth: per 1-s window (starts 0, 1, ...) the speech-time-weighted mean arousal of the segments
    [(start, end, arousal)] -> (window starts, arousal per window)."""
    times, act = [], []
    for t0 in np.arange(0.0, max(duration - win, 0.0) + 1e-9, win):
        w = [(min(e, t0 + win) - max(s, t0), a) for s, e, a in segments]
        w = [(x, a) for x, a in w if x > 0]
        if w:
            times.append(round(float(t0), 3))
            act.append(round(sum(x * a for x, a in w) / sum(x for x, _ in w), 4))
    return times, act


def refuse_existing(out, force=False):
    """A builder's output folder must not exist unless `force` (--overwrite; then it is replaced when the new one
    is done). An output whose parent is a file is refused here too."""
    out = Path(out)
    for p in [out, *out.parents]:
        if p.exists() and not p.is_dir() and p != out:
            raise CorpusError(f"{out}: {p} is a file, so the corpus folder cannot be created there; pick another OUT")
    if out.exists() and not out.is_dir():
        raise CorpusExistsError(f"{out} is a file; pick another OUT")
    if out.exists() and not force:
        raise CorpusExistsError(f"{out} exists; delete it or pass --overwrite to rebuild")


@contextlib.contextmanager
def staged_dir(out, subdirs=()):
    """Yield a hidden temporary folder next to `out` holding `subdirs`; the caller fills it and publishes it
    with `publish_dir`. Whatever is left of it when the block ends (an error, or not published) is removed."""
    from outputs import output_lock, umask_mode
    from utils import ensure_dir
    out = Path(out)
    ensure_dir(out.parent, flag='OUT')
    lock = output_lock(out, f'the corpus {out}').acquire()     # a second build into `out` stops, naming this one
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    _STAGED[str(tmp)] = out.exists()     # existed when the build began (with --overwrite): may be replaced
    try:
        os.chmod(tmp, umask_mode())      # mkdtemp gives drwx------: the corpus gets the user's umask like any folder
        for d in subdirs:
            (tmp / d).mkdir()
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _STAGED.pop(str(tmp), None)
        lock.release()


_STAGED = {}


def publish_dir(tmp, out):
    """Move a completely built corpus folder `tmp` to `out`, swapping an existing `out` aside first, so that a
    crash never leaves a half corpus under the final name. An `out` that appeared while this build ran (another
    run published there) is not replaced."""
    from outputs import umask_mode
    out = Path(out)
    if out.exists() and not _STAGED.get(str(tmp), True):
        raise CorpusExistsError(f"{out} was written by another run while this one was building; this build was not "
                                f"published (pass --overwrite to replace that corpus)")
    os.chmod(tmp, umask_mode())
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, out)


# ---------------------------------------------------------------------------------------------

def csv_error(path, e):
    """The message for a CSV that cannot be read: an encoding other than UTF-8 is named, with the fix."""
    if isinstance(e, UnicodeDecodeError):
        head = bytes(e.object[:2]) if isinstance(e.object, (bytes, bytearray)) else b''
        if head in (b'\xff\xfe', b'\xfe\xff'):
            return (f"{path}: UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8. Save it as UTF-8, "
                    f"e.g. iconv -f utf-16 -t utf-8 OLD > NEW")
        return (f"{path}: not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} is not valid UTF-8; saved as "
                f"Latin-1/Windows-1252?). Save it as UTF-8, e.g. iconv -f latin1 -t utf-8 OLD > NEW")
    return f"{path}: cannot read CSV ({e})"


class Corpus:
    """One MSP-Podcast release (or a corpus in its layout). See the module docstring."""

    def __init__(self, root, fold=None, echo=True):
        """fold: take splits from Labels/folds.csv column fold<K>; echo: print label warnings (values left out,
        dropped rows) to stderr as they are found."""
        self.root, self.echo = Path(root), echo
        self.label_warnings, self.bad_labels = [], {}    # bad_labels: (column, FileName) -> the value in the file
        if not self.root.is_dir():
            raise CorpusError(f"corpus folder {self.root} does not exist; pass the MSP-Podcast root "
                              f"(the folder holding Audios/ and Labels/)")
        self.name = self.root.resolve().name
        self.warnings = []   # non-fatal problems found while loading (check_corpus prints them)
        self.audio_dir = _find(self.root, AUDIO_DIRS) or self.root / 'Audios'
        if not self.audio_dir.is_dir():
            self.warnings.append(f"{self.root}: no Audio/ or Audios/ folder; audio cannot be read")
        self.labels_dir = self.consensus_path = None
        for d in [self.root / n for n in LABEL_DIRS] + [self.root]:
            self.consensus_path = _find(d, CONSENSUS_NAMES, want_dir=False)
            if self.consensus_path:
                self.labels_dir = d
                break
        if self.consensus_path is None:
            raise CorpusError(f"{self.root}: no consensus label file; looked for "
                              f"{'|'.join(LABEL_DIRS)}/{' or '.join(CONSENSUS_NAMES)}. Pass the MSP-Podcast "
                              f"root folder (the one holding Labels/)")
        self.detailed_path = (_find(self.labels_dir, DETAILED_NAMES, want_dir=False)
                              or _find(self.root, DETAILED_NAMES, want_dir=False))
        self.transcript_dir = _find(self.root, TRANSCRIPT_DIRS) or self.root / 'Transcripts'
        self.textgrid_dir = _find(self.root, TEXTGRID_DIRS) or self.root / 'ForceAligned'
        self.labels = self._read_consensus(self.consensus_path)
        self.folds_path = self.labels_dir / FOLDS_NAME
        self.fold = None   # the chosen fold's name ('fold3') when the splits come from folds.csv
        if fold is not None:
            self._use_fold(fold)
        self._row = pd.Series(np.arange(len(self.labels)), index=self.labels['FileName'].values)
        self._split_map = split_map(pd.unique(self.labels['Split_Set'].dropna()).tolist())
        self._split_user = self.labels['Split_Set'].map(lambda n: self._split_map.get(n))
        self._ratings = None
        self._rl_cache = {}

    def __repr__(self):
        f = f", {self.fold}" if self.fold else ""
        return f"Corpus({str(self.root)!r}{f}, {len(self.labels)} utterances, splits {self.splits_found()})"

    # -- folds (Labels/folds.csv, written by prepare_corpus.py) -----------------------------------
    def fold_names(self):
        """['fold1', 'fold2', ...] of Labels/folds.csv in numeric order; [] when there is no folds file."""
        if not self.folds_path.is_file():
            return []
        try:
            head = pd.read_csv(self.folds_path, nrows=0).columns
        except Exception as e:
            raise CorpusError(csv_error(self.folds_path, e)) from None
        names = [str(c).strip() for c in head if re.fullmatch(r'fold\d+', str(c).strip())]
        return sorted(names, key=lambda n: int(n[4:]))

    def _use_fold(self, fold):
        """Take every utterance's split from folds.csv column fold<k> (Split_Set then holds that fold's split;
        the release's own column stays as Split_Set_default). Utterances with an empty cell, or missing from the
        folds file, are in no split."""
        path = self.folds_path
        if not path.is_file():
            raise CorpusError(f"--fold {fold}: {path} does not exist; this corpus has no folds (prepare_corpus.py "
                              f"writes them), so leave --fold out")
        names = self.fold_names()
        s = str(fold).strip().lower()
        k = s[4:] if s.startswith('fold') else s
        name = f'fold{int(k)}' if k.isdigit() else None
        if name not in names:
            raise CorpusError(f"--fold {fold}: no such fold in {path}; folds available: "
                              f"{', '.join(names) or 'none'} (pass 1..{len(names)} or a name)")
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
        except Exception as e:
            raise CorpusError(csv_error(path, e)) from None
        df.columns = [str(c).strip() for c in df.columns]
        if 'FileName' not in df.columns:
            raise _missing_cols_error(path, ['FileName'], df.columns, ['FileName', 'SpkrID'] + names)
        cell = df[name].str.strip()
        bad = cell[(cell != '') & cell.map(user_split).isna()]
        if len(bad):
            raise CorpusError(f"{path}: column {name} holds {sorted(set(bad))[:5]}; each cell must be Train, "
                              f"Validation, Test or empty")
        split = pd.Series(cell.where(cell != '').values, index=_wav_names(df['FileName']).values)
        dup = split.index.duplicated(keep=False)
        if dup.any():           # one utterance in two rows: refused when the rows disagree, read once otherwise
            clash = split[dup].groupby(level=0).nunique(dropna=False)
            clash = clash[clash > 1]
            if len(clash):
                n = clash.index[0]
                raise CorpusError(f"{path}: {len(clash)} FileName(s) appear in several rows with different {name} "
                                  f"parts, e.g. {n} ({', '.join(map(str, split[n].tolist()))}); keep one row per "
                                  f"utterance (prepare_corpus.py writes one)")
            split = split[~split.index.duplicated()]
        self.labels['Split_Set_default'] = self.labels['Split_Set']
        self.labels['Split_Set'] = split.reindex(self.labels['FileName'].values).values
        self.fold = name

    def __len__(self):
        return len(self.labels)

    # -- consensus labels ----------------------------------------------------------------------
    def _read_consensus(self, path):
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=['', 'NaN', 'nan', 'NA'],
                             skipinitialspace=True)
        except Exception as e:
            raise CorpusError(csv_error(path, e)) from None
        df.columns = [str(c).strip() for c in df.columns]
        df = _rename_alias(df, {c: [] for c in LABEL_COLS})
        missing = [c for c in REQUIRED_COLS if c not in df.columns]
        if missing:
            raise _missing_cols_error(path, missing, df.columns, LABEL_COLS)
        for c in LABEL_COLS:
            if c not in df.columns:
                self.warnings.append(f"{path}: no {c} column; filled with NaN")
                df[c] = np.nan
        df = df[LABEL_COLS + [c for c in df.columns if c not in LABEL_COLS]].copy()
        df['FileName'] = _wav_names(df['FileName'])
        df['Split_Set'] = df['Split_Set'].astype('string').str.strip().astype(object)
        df['_line'] = np.arange(len(df)) + 2            # the CSV line (1 = header), for messages
        for c in EMO_COLS:
            df[c] = self._check_label_column(path, df, c)
        df = self._drop_duplicates(path, df)
        if df.empty:
            raise CorpusError(f"{path}: no utterances (the file holds a header and no rows); write one row per "
                              f"recording")
        return df.drop(columns='_line').reset_index(drop=True)

    def _label_warning(self, msg):
        self.warnings.append(msg)
        self.label_warnings.append(msg)
        if self.echo:
            print(f'warning: {msg}', file=sys.stderr)

    def _check_label_column(self, path, df, col):
        """One consensus column as float: text that is not a number and values outside the 1-7 scale become NaN
        (that utterance is left out wherever the attribute is needed) with a warning naming the count and the
        lines; a column that holds no number, or mostly values outside 1-7 (another scale), is an error."""
        raw = df[col]
        v = _num(raw)
        stripped = raw.astype('string').str.strip()
        text = (stripped.notna() & stripped.ne('') & v.isna()).fillna(False).astype(bool)
        finite = np.isfinite(v)
        out = finite & ((v < RATING_RANGE[0]) | (v > RATING_RANGE[1]))
        lo, hi = RATING_RANGE

        def examples(mask, shown):
            rows = df.loc[mask, ['_line', 'FileName']].head(3)
            fmt = lambda x: f'{x:g}' if isinstance(x, (float, np.floating)) else repr(str(x))   # noqa: E731
            return ', '.join(f"line {ln} ({fn}: {fmt(shown[i])})" for i, (ln, fn) in zip(rows.index, rows.values))
        if text.any() and not finite.any():
            raise CorpusError(f"{path}: column {col} holds no numbers ({int(text.sum())} text values, e.g. "
                              f"{examples(text, raw)}); it must hold the consensus rating on the {lo:g}-{hi:g} scale "
                              f"(are the columns swapped?)")
        if finite.any() and out.sum() > 0.5 * finite.sum():
            raise CorpusError(f"{path}: {int(out.sum())} of {int(finite.sum())} {col} values lie outside {lo:g}-{hi:g} "
                              f"(range {v[finite].min():g}..{v[finite].max():g}, e.g. {examples(out, v)}): labels on "
                              f"another scale; map them to the MSP-Podcast {lo:g}-{hi:g} scale first (e.g. 1 + 6x for "
                              f"0-1)")
        for mask, what in ((text, 'text that is not a number'), (out, f'values outside {lo:g}-{hi:g}')):
            if mask.any():
                self.bad_labels.update({(col, n): str(raw[i]) for i, n in df.loc[mask, 'FileName'].items()})
                self._label_warning(f"{path}: {int(mask.sum())} {col} {what} ({examples(mask, raw)}"
                                    f"{' ...' if mask.sum() > 3 else ''}); those utterances are left out wherever "
                                    f"{col} is needed (check_corpus.py lists them)")
        return v.where(~out)

    def _drop_duplicates(self, path, df):
        """Rows repeating a FileName: identical repeats are dropped with a warning; repeats that disagree (other
        labels or split) are an error, since either row could be the right one."""
        dup = df['FileName'].duplicated(keep=False)
        if not dup.any():
            return df
        cols = [c for c in df.columns if c != '_line']
        d = df[dup]
        conflict = d.groupby('FileName')[cols].nunique(dropna=False).gt(1).any(axis=1)
        if conflict.any():
            name = conflict[conflict].index[0]
            lines = d.loc[d['FileName'] == name, '_line'].tolist()
            raise CorpusError(f"{path}: {int(conflict.sum())} FileName(s) appear in several rows that disagree, e.g. "
                              f"{name} on lines {lines}; keep one row per utterance")
        extra = df['FileName'].duplicated()
        self._label_warning(f"{path}: {int(extra.sum())} repeated identical rows dropped (e.g. "
                            f"{df.loc[extra, 'FileName'].iloc[0]} on line {int(df.loc[extra, '_line'].iloc[0])})")
        return df[~extra]

    def splits_found(self):
        """{'Train': ['Train'], 'Validation': ['Development'], 'Test': ['Test1']} (release names)."""
        out = {u: [] for u in USER_SPLITS}
        for n in sorted(self._split_map, key=str):
            if self._split_map[n]:
                out[self._split_map[n]].append(n)
        return out

    def unmapped_splits(self):
        """Release split names outside Train/Validation/Test (e.g. 'Test2', 'Test3_unreleased'); each can be
        selected by its own name."""
        return sorted(str(n) for n, u in self._split_map.items() if not u)

    def _split_mask(self, split):
        if split is None:
            return np.ones(len(self.labels), bool)
        s = str(split).strip()
        u = {x.lower(): x for x in USER_SPLITS}.get(s.lower())
        if u is not None:
            return (self._split_user == u).values
        release = self.labels['Split_Set'].astype('string').str.strip().str.lower()
        hit = (release == s.lower()).fillna(False).values.astype(bool)
        if hit.any():
            return hit
        raise CorpusError(f"unknown split {split!r} for {self.consensus_path}; use Train, Validation, Test (the "
                          f"published test set) or a release name (found {self.splits_found()}, other names: "
                          f"{self.unmapped_splits()})")

    def release_splits(self, split=None, names=None):
        """Release split names (Split_Set values) of a split selection, or of the files `names`: what was scored."""
        sel = self.labels['Split_Set'][self._split_mask(split)] if names is None else \
            self.labels['Split_Set'].iloc[self._row.reindex(list(names)).dropna().astype(int).values]
        return sorted({str(n) for n in sel.dropna()})

    def files(self, split=None):
        """FileNames (with .wav) of a user split (Train|Validation|Test; Test = Test1 where the release has it),
        a release split name (Development, Test1, Test2, ..., any case) or all (None). A known split with no
        utterances gives []."""
        return self.labels['FileName'][self._split_mask(split)].tolist()

    def audio_path(self, name):
        return self.audio_dir / name

    def _get(self, name, col):
        i = self._row.get(name)
        if i is None:
            raise CorpusError(f"{name} is not in {self.consensus_path}")
        return self.labels[col].iat[i]

    def speaker(self, name):
        s = self._get(name, 'SpkrID')
        if pd.isna(s) or str(s).strip().lower() in ('', 'unknown', 'nan'):
            return None
        return str(s).strip()

    def consensus(self, name, emo):
        return float(self._get(name, _emo_col(emo)))

    def split_of(self, name):
        """User split (Train/Validation/Test) of a file, or None for unmapped release splits."""
        i = self._row.get(name)
        u = None if i is None else self._split_user.iat[i]
        return u if isinstance(u, str) else None

    # -- per-annotator labels -----------------------------------------------------------------
    def ratings(self):
        """Long table FileName, Worker, EmoAct, EmoVal, EmoDom (float; NaN kept), sorted by FileName.

        Read from labels_detailed.json, long-form labels_detailed.csv or its EmoDetail form; cached.
        """
        if self._ratings is None:
            p = self.detailed_path
            if p is None:
                raise CorpusError(f"{self.labels_dir}: no per-annotator labels ({' or '.join(DETAILED_NAMES)}); "
                                  f"they are needed for the QA preference labels and emotion curves. Copy the "
                                  f"release's labels_detailed file into {self.labels_dir}")
            try:
                r = _read_detailed_json(p) if p.suffix.lower() == '.json' else _read_detailed_csv(p)
            except CorpusError:
                raise
            except Exception as e:
                raise CorpusError(f"{p}: cannot read per-annotator labels ({e})") from None
            r['FileName'] = _wav_names(r['FileName'])
            r['Worker'] = r['Worker'].astype('string').str.strip().astype(object)
            r = r[RATING_COLS].sort_values('FileName', kind='stable').reset_index(drop=True)
            self._check_ratings(p, r)
            self._ratings = r
        return self._ratings

    def _check_ratings(self, path, r):
        """Annotator ratings outside 1-7 are dropped where ratings are used (rating_lists), with a warning giving
        the count; mostly outside 1-7 means another scale, an error."""
        lo, hi = RATING_RANGE
        for col in EMO_COLS:
            v = r[col].to_numpy(np.float64)
            finite = np.isfinite(v)
            out = finite & ((v < lo) | (v > hi))
            if finite.any() and out.sum() > 0.5 * finite.sum():
                raise CorpusError(f"{path}: {int(out.sum())} of {int(finite.sum())} annotator {col} ratings lie "
                                  f"outside {lo:g}-{hi:g} (range {v[finite].min():g}..{v[finite].max():g}): ratings on "
                                  f"another scale; map them to {lo:g}-{hi:g} first")
            if out.any():
                i = int(np.flatnonzero(out)[0])
                self._label_warning(f"{path}: {int(out.sum())} annotator {col} ratings outside {lo:g}-{hi:g} are "
                                    f"dropped (e.g. {r['FileName'].iat[i]}, {r['Worker'].iat[i]}: {v[i]:g}); "
                                    f"check_corpus.py lists them")

    @property
    def detailed_format(self):
        """'json', 'csv' (long form), 'emodetail' or None."""
        p = self.detailed_path
        if p is None:
            return None
        if p.suffix.lower() == '.json':
            return 'json'
        head = pd.read_csv(p, nrows=0).columns
        return 'emodetail' if any(str(c).strip().lower() == 'emodetail' for c in head) else 'csv'

    def rating_lists(self, emo, split=None):
        """FileName -> np.ndarray of that file's annotator ratings for `emo` (NaN and values outside
        1..7 removed). Files of the split without any valid rating are left out."""
        key = (_emo_col(emo), None if split is None else str(split))
        if key not in self._rl_cache:
            r = self.ratings()
            col = key[0]
            v = r[col].values
            ok = np.isfinite(v) & (v >= RATING_RANGE[0]) & (v <= RATING_RANGE[1])
            if split is not None:
                ok &= r['FileName'].isin(set(self.files(split))).values
            names, vals = r['FileName'].values[ok], v[ok]   # already sorted by FileName
            uniq, start = np.unique(names, return_index=True)
            order = np.argsort(start)
            uniq, start = uniq[order], start[order]
            self._rl_cache[key] = dict(zip(uniq.tolist(), np.split(vals.astype(np.float64), start[1:])))
        return self._rl_cache[key]

    # -- text ---------------------------------------------------------------------------------
    def transcript_path(self, name):
        return self.transcript_dir / (Path(name).stem + '.txt')

    def textgrid_path(self, name):
        return self.textgrid_dir / (Path(name).stem + '.TextGrid')

    def transcript(self, name):
        """Transcript text (stripped), or None when Transcripts/<stem>.txt is missing."""
        p = self.transcript_path(name)
        try:
            return _read_text(p).strip()
        except FileNotFoundError:
            return None

    def words(self, name):
        """[(start, end, word)] from ForceAligned/<stem>.TextGrid's first tier (silence dropped),
        None when the TextGrid is missing; CorpusError when it is unreadable."""
        p = self.textgrid_path(name)
        if not p.is_file():
            return None
        return textgrid_words(p)


def _emo_col(emo):
    e = str(emo)
    if e in EMO_COLS:
        return e
    m = {'act': 'EmoAct', 'arousal': 'EmoAct', 'dom': 'EmoDom', 'dominance': 'EmoDom',
         'val': 'EmoVal', 'valence': 'EmoVal'}.get(e.lower())
    if m is None:
        raise CorpusError(f"unknown emotion attribute {emo!r}; use Act, Dom or Val")
    return m
