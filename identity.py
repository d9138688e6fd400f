"""Identity by content: fingerprints of what every artefact was made from (docs/identity.md).

An artefact (a converted corpus, a feature store, a NormTerm, a model, the done marker of a protocol step) is
keyed on the content of its inputs and on its settings, never on their paths or folder names, as in
content-addressed build tools: a renamed or moved folder with the same content keeps its identity, a
same-named folder with other content does not.

    file_fp(path)            {'name', 'size', 'sha256'} of one file
    corpus_fp(corpus)        labels, per-rater labels, folds file and audio (name, size, SHA-256 of each file)
    audio_fps(corpus, names) {FileName: (size, sha256)} of the recordings (None for a missing one)
    speaker_fps(corpus)      {speaker ID: fingerprint of the audio of all of that speaker's utterances}
    store_fp(store)          the extraction settings of a feature store + the sources of what it holds
    step_key(**parts)        the key of a protocol step's done marker (inputs' fingerprints + settings)
    digest(obj)              SHA-256 of an object's canonical JSON

File hashes are cached (SQLite, SER_HASH_CACHE or ~/.cache/ser_toolkit/file_hashes.sqlite) under the file's
resolved path, size, modification time (ns) and inode: a rerun on an unchanged corpus of 100k files only
stats its files (bench/bench_fingerprint.py). A cache that cannot be opened is skipped, never trusted blindly.
"""
import csv
import hashlib
import io
import json
import os
import sqlite3
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from errors import ToolkitError

SOURCES = 'sources.csv'       # FileName,size,sha256 of what a feature store was extracted from
# meta.json fields of a feature store that describe its state, not what defines its content
# (and paths: the corpus a store came from is identified by sources.csv, not by where it was)
STORE_STATE_KEYS = {'complete', 'n_utterances', 'n_rows', 'skipped', 'seconds', 'wall_seconds', 'created',
                    'finished', 'toolkit_revision', 'source', 'store', 'corpus', 'sources_sha256', 'sources_n',
                    'version', 'offset_unit'}


class IdentityError(ToolkitError):
    """An artefact made from other inputs than the ones given; the message names what differs."""


def digest(obj):
    """SHA-256 (hex) of the canonical JSON of `obj` (sorted keys, no spaces)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(',', ':'), default=str).encode()).hexdigest()


def _sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- the hash cache
def cache_path():
    env = os.environ.get('SER_HASH_CACHE')
    if env is not None:
        return None if env in ('', 'off') else Path(env)
    return Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'ser_toolkit' / 'file_hashes.sqlite'


class HashCache:
    """path -> (size, mtime_ns, inode, sha256), read once per process and written back in one transaction."""

    _lock = threading.Lock()

    def __init__(self, path):
        self.path, self.rows, self.new, self.ok = path, {}, {}, path is not None
        if not self.ok:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.execute('CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, '
                           'inode INTEGER, sha256 TEXT)')
                self.rows = {r[0]: r[1:] for r in db.execute('SELECT path, size, mtime_ns, inode, sha256 FROM files')}
        except (OSError, sqlite3.Error) as e:
            print(f'note: file-hash cache {self.path} not usable ({e}); hashing without it', file=sys.stderr)
            self.ok = False

    def _db(self):
        return sqlite3.connect(self.path, timeout=30)

    def get(self, key, st):
        r = self.rows.get(key)
        if r and r[0] == st.st_size and r[1] == st.st_mtime_ns and r[2] == st.st_ino:
            return r[3]
        return None

    def put(self, key, st, sha):
        with self._lock:
            self.rows[key] = self.new[key] = (st.st_size, st.st_mtime_ns, st.st_ino, sha)

    def flush(self):
        if not (self.ok and self.new):
            return
        try:
            with self._db() as db:
                db.executemany('INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)',
                               [(k, *v) for k, v in self.new.items()])
            self.new = {}
        except sqlite3.Error as e:
            print(f'note: file-hash cache {self.path} not written ({e})', file=sys.stderr)


_CACHES = {}


def _cache():
    p = cache_path()
    if p not in _CACHES:
        _CACHES[p] = HashCache(p)
    return _CACHES[p]


_DIRS = {}


def _key(p):
    """The cache key of a path: its folder resolved (links, '..'; one look-up per folder) + its name."""
    d, sep, n = str(p).rpartition(os.sep)
    d = d or sep or '.'
    r = _DIRS.get(d)
    if r is None:
        r = _DIRS[d] = os.path.realpath(d)
    return r + os.sep + n


def file_hashes(paths, workers=4):
    """{path: (size, sha256)} of existing files, None for a missing one; unchanged files come from the cache."""
    cache, out, todo = _cache(), {}, []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out[p] = None
            continue
        key = _key(p)
        sha = cache.get(key, st)
        if sha is None:
            todo.append((p, key, st))
        else:
            out[p] = (st.st_size, sha)

    def one(item):
        p, key, st = item
        sha = _sha256(p)
        cache.put(key, st, sha)
        return p, (st.st_size, sha)
    if todo:
        if len(todo) > 8 and workers > 1:
            with ThreadPoolExecutor(workers) as ex:
                out.update(ex.map(one, todo))
        else:
            out.update(map(one, todo))
        cache.flush()
    return out


def file_fp(path):
    """{'name', 'size', 'sha256'} of a file (None for a missing one)."""
    if path is None:
        return None
    h = file_hashes([str(path)])[str(path)]
    return None if h is None else {'name': Path(path).name, 'size': h[0], 'sha256': h[1]}


def file_sha(path):
    fp = file_fp(path)
    return fp and fp['sha256']


# ---------------------------------------------------------------- corpora
def audio_fps(corpus, names=None):
    """{FileName: (size, sha256) or None (missing)} of the recordings of `names` (default: every labelled one)."""
    names = list(corpus.labels['FileName']) if names is None else list(names)
    paths = {n: str(corpus.audio_path(n)) for n in names}
    h = file_hashes(list(paths.values()))
    return {n: h[p] for n, p in paths.items()}


def audio_digest(fps):
    """One SHA-256 over sorted (name, size, sha256) triples."""
    return digest(sorted([n, *(v or (None, None))] for n, v in fps.items()))


def corpus_fp(corpus, names=None):
    """The identity of a corpus (or of the utterances `names` of it): its label files, folds file and audio."""
    fps = audio_fps(corpus, names)
    parts = {'labels': file_sha(corpus.consensus_path), 'labels_detailed': file_sha(corpus.detailed_path),
             'folds': file_sha(corpus.folds_path) if Path(corpus.folds_path).is_file() else None,
             'audio': audio_digest(fps), 'n_audio': len(fps), 'missing_audio': sum(v is None for v in fps.values())}
    return {**parts, 'sha256': digest(parts)}


def speaker_fps(corpus, speakers=None):
    """{speaker ID: 16-hex fingerprint of the audio of all of that speaker's utterances in the labels file}: the
    same speaker in a copied, renamed or re-folded corpus has the same fingerprint; another corpus's speaker
    with the same ID has another. Utterances without a speaker ID are left out."""
    lab = corpus.labels
    spk = {n: corpus.speaker(n) for n in lab['FileName']}
    want = None if speakers is None else {str(s) for s in speakers}
    names = [n for n, s in spk.items() if s is not None and (want is None or s in want)]
    fps = audio_fps(corpus, names)
    by = {}
    for n in names:
        v = fps[n]
        by.setdefault(spk[n], []).append(v[1] if v else f'missing:{n}')
    return {s: digest(sorted(h))[:16] for s, h in by.items()}


def speakers_of(corpus, names):
    """{speaker ID: fingerprint} of the speakers of `names` (speaker IDs from the labels file)."""
    ids = {corpus.speaker(n) for n in names} - {None}
    return speaker_fps(corpus, ids) if ids else {}


def seen_speakers(recorded, tested):
    """Speakers of `tested` ({id: fp}) whose fingerprint is in `recorded` ({id: fp}) -> sorted IDs."""
    have = set((recorded or {}).values())
    return sorted(s for s, fp in tested.items() if fp in have)


def trained_on(corpus, store, names):
    """What a model saw, by content (its record's 'trained_on'): the corpus (labels, folds, audio), the feature
    store, and the fingerprints of the speakers of `names` (its Train and Validation utterances)."""
    return {'corpus_sha256': corpus_fp(corpus)['sha256'], 'features_sha256': store_fp(store)['sha256'],
            'features_settings': store_settings(store.meta), 'utterances': len(names),
            'speakers': speakers_of(corpus, names)}


def check_features_settings(ckpt, store):
    """Stop when a model's record says it was trained on features extracted with other settings than `store`
    (any field that defines a store's content: feature, preset, hop, dim, model, upstream checksums, ...)."""
    want = (ckpt.record.get('trained_on') or {}).get('features_settings')
    if not want:
        return
    have = store_settings(store.meta)
    diff = [f'{k}: model {want.get(k)!r}, store {have.get(k)!r}' for k in sorted(set(want) | set(have))
            if want.get(k) != have.get(k) and k != 'columns']
    if diff:
        raise IdentityError(f'{ckpt.path} was trained on features extracted with other settings than {store.path} '
                            f'({"; ".join(diff[:4])}); extract the features as the model was trained')


def speaker_leaks(corpus, names, sources):
    """Which of `sources` ([(what, {speaker ID: fingerprint} or None)]: a model, a NormTerm, ...) saw a speaker of
    the tested utterances `names` -> [(what, [speaker IDs])]. Sources without speaker fingerprints (the authors'
    release, records of older toolkits) cannot be checked and are left out."""
    if not any(rec for _, rec in sources):
        return []
    tested = speakers_of(corpus, names)
    out = []
    for what, rec in sources:
        seen = seen_speakers(rec, tested) if rec else []
        if seen:
            out.append((what, seen))
    return out


def check_speaker_leaks(leaks, allow=False, flag='--allow-seen-speakers'):
    """Stop when a model or its statistics saw a tested speaker, unless `allow` -> the flag text every output row
    then carries ('' when nothing leaks)."""
    if not leaks:
        return ''
    text = '; '.join(f'{what} saw tested speaker(s) {", ".join(ids[:8])}{" ..." if len(ids) > 8 else ""}'
                     for what, ids in leaks)
    if not allow:
        raise IdentityError(f'{text} (same audio, whatever the folder or fold names): the score would not be '
                            f'speaker-independent. Use a model and statistics computed without these speakers (e.g. '
                            f'the Train part of this fold), or pass {flag} to score anyway (every output row then '
                            f'names them)')
    print(f'warning: {text}; scored anyway because of {flag} (every output row says so)', file=sys.stderr)
    return 'SEEN SPEAKERS: ' + text


# ---------------------------------------------------------------- feature stores
def source_fps(corpus, names, feature):
    """{FileName: (size, sha256)} of the files a store of `feature` is extracted from: transcripts for 'text',
    recordings otherwise."""
    if feature != 'text':
        return audio_fps(corpus, names)
    paths = {n: str(corpus.transcript_path(n)) for n in names}
    h = file_hashes(list(paths.values()))
    return {n: h[p] for n, p in paths.items()}


def write_sources(store_path, fps):
    """<store>/sources.csv: FileName,size,sha256 of the file each stored utterance was extracted from -> digest."""
    from utils import atomic_write_text
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(['FileName', 'size', 'sha256'])
    w.writerows([n, *(v or ('', ''))] for n, v in sorted(fps.items()))
    atomic_write_text(Path(store_path) / SOURCES, buf.getvalue())
    return audio_digest(fps)


def read_sources(store_path):
    """{FileName: (size, sha256)} of sources.csv, None when the store has none (written before it was kept)."""
    p = Path(store_path) / SOURCES
    if not p.is_file():
        return None
    with open(p, newline='') as f:
        rows = list(csv.reader(f))[1:]
    return {r[0]: (int(r[1]), r[2]) if r[2] else None for r in rows if len(r) == 3}


def store_settings(meta):
    """What defines a feature store's content: every meta.json field except its state (complete, counts, ...),
    so that a new extraction setting joins the fingerprint without a code change."""
    return {k: v for k, v in meta.items() if k not in STORE_STATE_KEYS}


def store_fp(store):
    """The identity of a feature store: its extraction settings + the sources of the utterances it holds."""
    src = read_sources(store.path)
    held = sorted(store.names)
    parts = {'settings': store_settings(store.meta),
             'sources': audio_digest({n: src.get(n) for n in held}) if src is not None else None,
             'names': digest(held) if src is None else None}
    return {**parts, 'sha256': digest(parts)}


def store_mismatch(store, corpus, names=None):
    """Utterances (of `names`, default all) the store holds whose recorded source differs from the corpus's audio
    now -> (list of names, whether sources are known)."""
    src = read_sources(store.path)
    if src is None:
        return [], False
    names = [n for n in (corpus.labels['FileName'] if names is None else names) if n in src and n in store]
    now = source_fps(corpus, names, store.meta.get('feature'))
    return [n for n in names if src[n] is not None and now[n] != src[n]], True


def check_store(store, corpus, names=None):
    """Stop when the feature store was extracted from other audio than the corpus holds now (a same-named
    corpus, or edited recordings): the model would be scored on another recording's features."""
    bad, known = store_mismatch(store, corpus, names)
    gone = [n for n in bad if not Path(corpus.audio_path(n)).is_file()]
    if gone:
        raise IdentityError(f'{len(gone)} recording(s) of {corpus.consensus_path} are missing from {corpus.audio_dir} '
                            f'(e.g. {", ".join(gone[:3])}) although the feature store {store.path} holds their '
                            f'features: restore the audio, or remove those rows from the labels file')
    if bad:
        raise IdentityError(f'feature store {store.path} was extracted from other audio than {corpus.root} holds now '
                            f'({len(bad)} utterance(s) differ, e.g. {", ".join(bad[:3])}: other size or SHA-256 in '
                            f'{store.path / SOURCES}); extract this corpus into another --features folder, or pass '
                            f'--overwrite to extract_features.py to rebuild this one')
    return known


def default_store(corpus, kind='lld'):
    """The default store folder of a corpus, keyed on its content: features/<corpus name>/<kind> unless that
    one was extracted from other audio (another corpus in a same-named folder), then
    features/<corpus name>-<first 10 hex of the audio digest>/<kind>."""
    from feature_store import FeatureStore, StoreError, default_features
    p = default_features(corpus, kind)
    if not (p / 'meta.json').exists():
        return p
    try:
        bad, _ = store_mismatch(FeatureStore(p, allow_incomplete=True), corpus)
    except StoreError:
        return p
    if not bad:
        return p
    alt = p.parent.parent / f'{corpus.name}-{audio_digest(audio_fps(corpus))[:10]}' / kind
    print(f'note: {p} holds features of other audio than {corpus.root} (a corpus with the same folder name); '
          f'this corpus uses {alt}', file=sys.stderr)
    return alt


# ---------------------------------------------------------------- protocol steps
def step_key(**parts):
    """Key of a protocol step's done marker: the fingerprints of its inputs and its settings."""
    return digest(parts)
