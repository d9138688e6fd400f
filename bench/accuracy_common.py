"""Shared helpers of the accuracy benchmarks (bench_emodb, bench_retrieval, bench_mscr_missing, finetune_emodb).

They measure the project's real code paths: every step is the `main(argv)` of a project script
(prepare_emodb.py, extract_features.py, training.py, testing.py, chunk_emotion_rankers/*.py, ...),
run in worker processes with one torch thread each (`--jobs`; far faster than one process with two
threads on a shared 2-core machine). Each step's output goes to a log file; a finished step leaves a
`.done` marker holding the step's key: the SHA-256 of the toolkit's code (code_revision: the .py files
at the top, in chunk_emotion_rankers/ and in bench/) and of the step's command. A step is reused only when its marker holds
the same key, so an interrupted benchmark resumes where it stopped, benches that need the same thing (the
Emo-DB corpus, its LLDs, the rankers of a fold) share it through --data / --work, and a result computed by
other code or with other settings is never reused.
"""
import contextlib
import functools
import hashlib
import json
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / 'chunk_emotion_rankers', REPO / 'bench'):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from common import IMAGES, RESULTS, machine, machine_line, plt_agg, save_png, save_results  # noqa: E402,F401

DATASETS = REPO.parent / 'shared' / 'datasets'
EMODB_SPEAKERS = ['03', '08', '09', '10', '11', '12', '13', '14', '15', '16']
EMOS = ['Act', 'Dom', 'Val']
HIGH_AROUSAL, LOW_AROUSAL = set('WFA'), set('LT')      # anger, happiness, fear vs boredom, sadness
TRUNCATION_NOTE = ('The shared Emo-DB copy has every WAV cut to exactly 2.0 s and peak-normalised per file, so '
                   'each utterance is 125 LLD frames and its 22 one-second chunks overlap heavily (step 3 frames); '
                   'numbers on the full-length corpus will differ.')


def default_pretrained():
    """The authors' release next to this repository (../Chunk-Level-Emotion-Retrieval, or the copy under
    ../shared/pretrained), if there; checked by SHA-256 when a script loads it."""
    from checkpoints import release_root
    for p in (REPO.parent / 'Chunk-Level-Emotion-Retrieval',
              REPO.parent / 'shared' / 'pretrained' / 'Chunk-Level-Emotion-Retrieval'):
        if release_root(p) is not None:
            return str(p)
    return None


def add_common_args(p, jobs=2):
    p.add_argument('--data', default=str(REPO / 'data' / 'bench'),
                   help='folder for the prepared corpora and feature stores (reused between runs and benches)')
    p.add_argument('--work', default=str(REPO / 'runs' / 'bench_accuracy'),
                   help='folder for models, logs and predictions (finished steps are reused: delete it, or pass '
                        '--fresh, to recompute)')
    p.add_argument('--fresh', action='store_true', help='ignore finished steps in --work and recompute them')
    p.add_argument('--jobs', type=int, default=jobs, help='worker processes (one torch thread each)')
    p.add_argument('--out', default=str(RESULTS), help='folder of the results JSON and markdown table')
    p.add_argument('--images', default=str(IMAGES), help='folder of the PNG (images/bench_<name>.png)')
    p.add_argument('--seeds', default='0,1,2', help='comma list of seeds (mean ± std over them)')
    p.add_argument('--limit', type=int, default=None, help='smoke tests only: at most N utterances per split in every '
                   'step (the numbers are then meaningless)')
    return p


def add_emodb_args(p):
    p.add_argument('--emodb', default=str(DATASETS / 'emodb'), help='Emo-DB folder (wav/, silb/, erkennung.txt)')
    p.add_argument('--speakers', default=None, help='smoke tests only: convert only these Emo-DB speakers (comma '
                   'list; must include the test and development speakers of every fold)')


def limit_args(args):
    return ['--limit', args.limit] if args.limit else []


def emodb_name(args):
    """Folder stem of the converted Emo-DB ('emodb', or 'emodb_spk03-08-..' with --speakers)."""
    return 'emodb' + (f"_spk{args.speakers.replace(',', '-')}" if args.speakers else '')


def emodb_features(args, fold0, log_dir):
    return ensure_features(fold0, Path(args.data) / 'features' / emodb_name(args) / 'lld', 'lld', log_dir)


def seeds_of(s):
    return [int(x) for x in str(s).split(',') if x.strip()]


# ---------------------------------------------------------------- steps and jobs
class StepError(RuntimeError):
    pass


def _init_worker(threads):
    os.environ['OMP_NUM_THREADS'] = str(threads)
    import torch
    torch.set_num_threads(threads)
    for p in (REPO, REPO / 'chunk_emotion_rankers', REPO / 'bench'):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


@functools.lru_cache(maxsize=1)
def code_revision():
    """SHA-256 over the toolkit's source: every .py file at the top of the repository, in
    chunk_emotion_rankers/ and in bench/ (path and bytes; tests/ and data folders left out)."""
    h = hashlib.sha256()
    files = [*REPO.glob('*.py'), *(REPO / 'chunk_emotion_rankers').glob('*.py'), *(REPO / 'bench').glob('*.py')]
    for f in sorted(files):
        h.update(f.relative_to(REPO).as_posix().encode() + b'\0' + f.read_bytes() + b'\0')
    return h.hexdigest()


def step_key(module, argv):
    """What a finished step's marker must hold for the step to be reused: code revision + the command."""
    return hashlib.sha256(json.dumps([code_revision(), module, [str(a) for a in argv]]).encode()).hexdigest()


def run_step(module, argv, log, done=None, fresh=False):
    """`module.main(argv)` of a project script, stdout+stderr appended to `log` -> {'out': what main returned,
    'seconds': wall time}. With `done` (a marker path) a step that finished before with the same code and
    command (step_key) is skipped ('out' None, 'seconds' read back from the marker) and a finished one writes
    the marker. Raises StepError with the command and the log's path on failure."""
    key = step_key(module, argv) if done is not None else None
    if done is not None and Path(done).exists() and not fresh:
        marker = json.loads(Path(done).read_text() or '{}')
        if marker.get('key') == key:
            return {'out': None, 'seconds': marker.get('seconds'), 'cached': True}
    import importlib
    mod = importlib.import_module(module)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    cmd = f'python {module}.py ' + ' '.join(map(str, argv))
    t0 = time.perf_counter()
    with open(log, 'a') as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        print(f'$ {cmd}', flush=True)
        try:
            out = mod.main([str(a) for a in argv]) if _takes_argv(mod.main) else _main_no_argv(mod, argv)
        except SystemExit as e:
            if e.code not in (None, 0):
                raise StepError(f'{cmd}\n  -> {e.code}\n  log: {log}') from None
            out = None
        except Exception as e:
            traceback.print_exc(file=f)
            raise StepError(f'{cmd}\n  -> {type(e).__name__}: {e}\n  log: {log}') from None
    sec = round(time.perf_counter() - t0, 2)
    if done is not None:
        from utils import atomic_write_text
        atomic_write_text(done, json.dumps({'finished': time.strftime('%Y-%m-%d %H:%M:%S'), 'seconds': sec,
                                            'key': key}))
    return {'out': out, 'seconds': sec, 'cached': False}


def _takes_argv(fn):
    import inspect
    return len(inspect.signature(fn).parameters) > 0


def _main_no_argv(mod, argv):
    """Scripts whose main() reads sys.argv (prepare_emodb.py, make_spliced_set.py, ...)."""
    old = sys.argv
    sys.argv = [mod.__file__] + [str(a) for a in argv]
    try:
        return mod.main()
    finally:
        sys.argv = old


def run_job(job):
    """A job = {'key': ..., 'steps': [(module, argv, log, done), ...], 'fresh': bool} run in order
    -> (key, [run_step results], error or None). Errors are returned, never raised."""
    outs = []
    try:
        for module, argv, log, done in job['steps']:
            outs.append(run_step(module, argv, log, done, job.get('fresh', False)))
    except StepError as e:
        return job['key'], outs, str(e)
    except Exception as e:     # never lose the other jobs' results
        return job['key'], outs, f'{type(e).__name__}: {e}'
    return job['key'], outs, None


def run_jobs(jobs, n_workers=2, threads=1, desc='jobs'):
    """Run jobs (see run_job) on `n_workers` processes (1 = here, in this process). -> ({key: outputs},
    [(key, error)]). Failures are collected and returned, never raised, so one bad run cannot stop a
    long benchmark."""
    from tqdm import tqdm
    results, failed = {}, []
    if not jobs:
        return results, failed
    if n_workers <= 1:
        import torch
        old = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for job in tqdm(jobs, desc=desc, dynamic_ncols=True):
                key, outs, err = run_job(job)
                (failed.append((key, err)) if err else results.__setitem__(key, outs))
        finally:
            torch.set_num_threads(old)
        return results, failed
    import multiprocessing as mp
    with ProcessPoolExecutor(n_workers, mp_context=mp.get_context('spawn'), initializer=_init_worker,
                             initargs=(threads,)) as ex:
        futs = [ex.submit(run_job, j) for j in jobs]
        for fut in tqdm(as_completed(futs), total=len(futs), desc=desc, dynamic_ncols=True):
            key, outs, err = fut.result()
            (failed.append((key, err)) if err else results.__setitem__(key, outs))
    return results, failed


def wall_note(wall, results):
    """'wall time 12.3 min' plus how many steps were reused from an earlier run (their time is not in it)."""
    steps = [s for outs in results.values() for s in outs]
    cached = sum(bool(s.get('cached')) for s in steps)
    return f'wall time {wall / 60:.1f} min' + (f' ({cached} of {len(steps)} steps reused from earlier runs in --work, '
                                               f'not timed here)' if cached else '')


def report_failures(failed, out=print):
    if failed:
        out(f'\n{len(failed)} run(s) FAILED (left out of the tables):')
        for key, err in failed:
            out(f'  {key}: {err}')


def tag(**settings):
    """Short stable folder tag for a settings dict (so runs with other settings never reuse these)."""
    s = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(s.encode()).hexdigest()[:8]


# ---------------------------------------------------------------- corpora and features
def fold_speakers(k, n_folds):
    """Fold k of the speaker-disjoint Emo-DB folds: (test speakers, development speakers).
    Folds are the pairs 03,08 | 09,10 | 11,12 | 13,14 | 15,16; fold k tests pair k and validates on
    pair k+1 (cyclic); fold 0 is prepare_emodb.py's default split. n_folds = 1..5."""
    if not 1 <= n_folds <= 5 or not 0 <= k < n_folds:
        raise SystemExit(f'error: --folds must be 1..5 (speaker pairs of Emo-DB), got fold {k} of {n_folds}')
    pairs = [EMODB_SPEAKERS[2 * i:2 * i + 2] for i in range(5)]
    return pairs[k], pairs[(k + 1) % 5]


def emodb_fold(args, k, n_folds, log_dir):
    """Emo-DB (args.emodb) in the MSP layout with fold k's split (prepare_emodb.py) -> corpus root in args.data."""
    test, dev = fold_speakers(k, n_folds)
    out = Path(args.data) / f'{emodb_name(args)}_fold{k}'
    if not (out / 'Labels' / 'labels_consensus.csv').exists():
        if not (Path(args.emodb) / 'wav').is_dir():
            raise SystemExit(f'error: {args.emodb} is not an Emo-DB folder (no wav/); pass --emodb DIR '
                             f'(e.g. ../shared/datasets/emodb)')
        run_step('prepare_emodb', [args.emodb, out, '--test-speakers', ','.join(test), '--dev-speakers', ','.join(dev),
                                   '--force'] + (['--speakers', args.speakers] if args.speakers else []),
                 Path(log_dir) / f'prepare_{out.name}.log')
    return out


def ensure_features(corpus, out, kind, log_dir, workers=2):
    """Feature store of `corpus` (extract_features.py, resumable) -> path. Text uses the offline MiniLM."""
    out = Path(out)
    meta = out / 'meta.json'
    if not (meta.exists() and json.loads(meta.read_text()).get('complete')):
        run_step('extract_features', ['--corpus', corpus, '--feature', kind, '--out', out, '--workers', workers,
                                      '--device', 'cpu'], Path(log_dir) / f'extract_{Path(corpus).name}_{kind}.log')
    return out


def ensure_demo_corpus(out, log_dir, text_source=None, n=420):
    """make_demo_corpus.py (n utterances; EmoBank text with text_source) -> corpus root (built once)."""
    out = Path(out)
    if n != 420:
        out = out.with_name(f'{out.name}_n{n}')
    if not (out / 'Labels' / 'labels_consensus.csv').exists():
        argv = ['--out', out, '--workers', 1, '--force', '--n', n]
        argv += ['--text-source', text_source] if text_source else []
        run_step('make_demo_corpus', argv, Path(log_dir) / f'make_{out.name}.log')
    return out


def constant_rankseq(corpus, out):
    """Ranking sequences with all ranks equal: utils.generate_chunk_EmoSeq then gives a constant curve at
    the utterance mean, i.e. the Seq2Seq model is trained on the utterance mean only (alpha = 1)."""
    import pandas as pd
    out = Path(out)
    names = pd.read_csv(next((Path(corpus) / 'Labels').glob('labels_con*sus.csv')))['FileName']
    seq = {n: {'ChunkRankSeq': [1] * 22} for n in names}
    out.mkdir(parents=True, exist_ok=True)
    for e in EMOS:
        from utils import atomic_write_text
        atomic_write_text(out / f'training_{e}.json', json.dumps(seq))
    return out


def merge_rankseq(src_dir, emo, out_dir):
    """training_/validation_/testing_<Emo>.json of one folder -> one training_<Emo>.json with every
    utterance (training.py reads training_<Emo>.json and looks up the Train names of whichever fold)."""
    from utils import atomic_write_text
    merged = {}
    for s in ('training', 'validation', 'testing'):
        p = Path(src_dir) / f'{s}_{emo}.json'
        if p.exists():
            merged.update(json.loads(p.read_text()))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(out_dir) / f'training_{emo}.json', json.dumps(merged))
    return len(merged)


# ---------------------------------------------------------------- metrics and tables
def ccc(x, y):
    from utils import ccc as _ccc
    return _ccc(x, y)


def auc(scores, positive):
    """Area under the ROC curve (Mann-Whitney U, ties count 1/2)."""
    from scipy.stats import rankdata
    s, pos = np.asarray(scores, float), np.asarray(positive, bool)
    n1, n0 = pos.sum(), (~pos).sum()
    if n1 == 0 or n0 == 0:
        return float('nan')
    r = rankdata(s)
    return float((r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def arousal_auc(names, pred):
    """AUC of predicted arousal for Emo-DB high (W, F, A) vs low (L, T) arousal categories (letter 6 of the name)."""
    letters = np.array([Path(n).name[5] for n in names])
    keep = np.isin(letters, list(HIGH_AROUSAL | LOW_AROUSAL))
    return auc(np.asarray(pred)[keep], np.isin(letters[keep], list(HIGH_AROUSAL)))


def mean_std(values):
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if len(v) == 0:
        return float('nan'), float('nan'), 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def fmt_ms(values, digits=3):
    m, s, n = mean_std(values)
    return '–' if n == 0 else f'{m:.{digits}f} ± {s:.{digits}f}'


def markdown_table(header, rows):
    out = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join('---' for _ in header) + '|']
    out += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
    return '\n'.join(out)


def write_markdown(name, text, out_dir):
    from utils import atomic_write_text
    path = Path(out_dir) / f'{name}.md'
    atomic_write_text(path, text.rstrip() + '\n')
    print(f'wrote {path}')
    return path


def report(name, md, failed, out_dir, *, settings, info, wall, png, command, **fields):
    """The common end of an accuracy bench: note failed runs, write <name>.md and <name>.json, return the results."""
    if failed:
        md += f'\n{len(failed)} run(s) failed and are left out.\n'
    write_markdown(name, md, out_dir)
    res = {'settings': settings, 'machine': info, 'wall_seconds': round(wall, 1), **fields,
           'failed': [[str(k), e] for k, e in failed], 'png': str(png) if png else None, 'command': command}
    save_results(name, res, out_dir)
    return res


def command_line(script, argv):
    """The command that reproduces a run: python bench/<script>.py ARGS."""
    return ' '.join(['python', f'bench/{Path(script).name}', *map(str, argv)])


def machine_md(info):
    """'Machine: CPU, cores, torch, ...' for the markdown tables."""
    return 'Machine: ' + machine_line(info).removeprefix('machine: ')


def header(name, settings, out=print):
    """Print the machine line and the settings; returns the machine dict."""
    info = machine('cpu')
    out(machine_line(info))
    out(f'{name} settings: ' + ', '.join(f'{k}={v}' for k, v in settings.items()))
    return info
