"""GPU check: every CUDA path of the toolkit run once, checked, and timed side by side with the CPU.

    bash bench/gpu_check.sh --prepare            # here: .gpu_carry/ (wheels, the authors' release)
    bash bench/gpu_check.sh --dry-run            # here: the same run from the carried folder, CPU, tiny sizes
    bash bench/gpu_check.sh                      # on the lent GPU machine (bench/README.md: the device call)
    python bench/gpu_check.py --help             # the driver behind the shell script

Correctness (each a real command line, run as a user would; the first failure stops the run with exit
code 1 and the table so far):
  corpus         make_demo_corpus.py, extract_features.py --feature lld
  tiny models    a random-weight wav2vec2 and a random-weight BERT (config classes of transformers) with a
                 WordPiece tokenizer built here from the corpus transcripts, saved to local folders
  extraction     extract_features.py --feature wav2vec2 / text on the device, equal to --device cpu
  preference     generate_preference_labels.py
  ranker         training_ranker.py 1 epoch with --amp off, fp16, bf16; torchrun with 2 processes; --resume
  rank seqs      bench/bench_ranking.py: batched ranks (generate_ranking_seqence.py path) equal the all-pairs tournament
                 on 20 utterances; then every split with each --amp
  seq2seq        training.py 2 epochs with each --amp; torchrun with 2 processes; --resume
  testing        testing.py with each --amp; --amp off equal to --device cpu within 1e-4 per utterance
  predict        predict.py --pretrained (the authors' released models) on the device equal to --device
                 cpu within 1e-4 per utterance and chunk
  mscr           training.py --model mscr with each --amp + testing.py --model mscr --sweep; the --amp off
                 model tested on the device equal to the CPU; the --amp off run repeated (are the weights
                 equal?); torchrun with 2 processes; --resume
  losses         the training losses of --amp off / fp16 / bf16 side by side
torchrun with 2 processes on a 1-GPU machine: NCCL refuses two processes on one GPU, so they share it over
gloo (DDP_BACKEND=gloo, utils.ddp_setup): the DDP wrapper, the gradient all-reduce and the global-batch CCC
gather run on CUDA tensors, NCCL itself is not exercised. Equality checks run with NVIDIA_TF32_OVERRIDE=0
(TF32 off, so the GPU computes in float32 as the CPU does); the prediction difference under the default
TF32 setting is reported next to it.

Throughput (in this process, as the training scripts run: deterministic settings of utils.set_seed, a
warm-up before each timing, DataLoader worker start-up included; each on the device and with the same step
on the CPU cores; every figure names the device, torch version and settings):
  ranking sequences      utterances/s, batch 1024, the generate_ranking_seqence.py path
  Seq2Seq step           utterances/s, batch 128, published model, in-memory batch, each --amp
  Seq2Seq epoch          one epoch over a synthetic 150,000-utterance LLD store (2-11 s): loader alone,
                         loader + step (CPU: a few batches, extrapolated)
  MSCR                   iterations/s at batch 128, width 256, wav2vec2/RoBERTa-shaped inputs, crops and
                         pooling on the device: loader alone, step alone, loader + step
Goals (reported, not fatal): the loader is never the bottleneck, a Seq2Seq epoch over 150k utterances
takes < 60 s, 5000 MSCR iterations take < 5 min.

Results: gpu.json and gpu.md in --out (default bench/results), rewritten after every step so that a run
stopped by its time limit leaves what it did; with --dry-run gpu_cpu_rehearsal.json / .md (in
<workdir>/results, or bench/results with --rehearsal). A run past --deadline (seconds) skips the steps left
and says so. --mscr-study then runs the MSCR missing-data study at the published size (not on the lent
machine: it needs the MiniLM text-model package).
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

REPO = common.REPO
AMPS = ('off', 'fp16', 'bf16')
RELEASE = Path('pretrained') / 'Chunk-Level-Emotion-Retrieval'
PRETRAINED = next((b / RELEASE for b in (REPO / '.gpu_carry', REPO.parent / 'shared', REPO / 'shared')
                   if (b / RELEASE / 'NormTerm').is_dir()), REPO / '.gpu_carry' / RELEASE)
TOL = 1e-4
GOAL_EPOCH_S, GOAL_MSCR_S, MSCR_PUBLISHED_ITERS = 60.0, 300.0, 5000

# sizes: (GPU run, --dry-run)
SIZES = {
    'corpus_utts': (420, 36), 'workers': (4, 1), 'limit': (None, 8),
    'pref_ratio': (0.1, 1.0), 'ranker_batch': (128, 4), 'ranker_pairs': (2048, 16), 'tournament_utts': (20, 1), 'rank_bench_utts': (64, 8),
    's2s_batch': (64, 8), 'mscr_iters': (100, 4), 'mscr_ddp_iters': (20, 4), 'mscr_batch': (64, 8), 'mscr_hidden': (256, 32),
    'mscr_ff': (512, 64), 'sweep_fracs': ('0,0.5,1', '0,1'), 'predict_files': (24, 3),
    'big_utts': (150_000, 48), 'rank_utts': (30_720, 32), 'rank_cpu_utts': (2048, 32), 'rank_batch': (1024, 16),
    's2s_reps': (30, 1), 'loader_batches': (300, 2), 'cpu_epoch_batches': (6, 1), 's2s_tp_batch': (128, 16),
    'mscr_tp_utts': (2048, 24), 'mscr_tp_batch': (128, 8), 'mscr_tp_iters': (100, 2), 'mscr_cpu_iters': (3, 1),
}

# ---- MSCR missing-data study: the ONE place that calls bench/bench_mscr_missing.py (adjust flags here) ----
# Published width 256 and 5,000 iterations (--published) on the demo corpus (LLD + MiniLM, the offline
# proxy of wav2vec2 + RoBERTa), with and without multi-scale crops; results go next to gpu.json.
MSCR_STUDY = ['bench/bench_mscr_missing.py', '--published', '--corpora', 'demo', '--seeds', '0']


class Fail(Exception):
    """A check that ran but gave a wrong result."""


class Late(Exception):
    """The run is past --deadline: the steps left are skipped (and listed as not run)."""


# ============================================================================ runner
class Checker:
    def __init__(self, args):
        self.args, self.dry = args, args.dry_run
        self.dev = 'cpu' if self.dry else args.device
        self.inproc = self.dry and not args.subprocess   # dry run: one interpreter (imports once); torchrun still spawns
        self.wd = Path(args.workdir).resolve()
        clean_workdir(self.wd, keep_results=args.out is not None or not self.dry)
        self.logs = self.wd / 'logs'
        self.logs.mkdir(parents=True, exist_ok=True)
        self.name = 'gpu_cpu_rehearsal' if self.dry else 'gpu'
        self.out = Path(args.out) if args.out else \
            (common.RESULTS if args.rehearsal or not self.dry else self.wd / 'results')
        self.rows, self.tp, self.t0 = [], {}, time.time()
        self.losses, self.not_run = {}, []
        self.env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'TQDM_DISABLE': '1', 'MPLBACKEND': 'Agg'}
        if self.dry:
            self.env['OMP_NUM_THREADS'] = '1'

    def size(self, key):
        return SIZES[key][1 if self.dry else 0]

    def late(self, name):
        if self.args.deadline and time.time() - self.t0 > self.args.deadline:
            self.not_run.append(name)
            print(f'[{time.time() - self.t0:6.0f} s] NOT RUN {name}: past --deadline {self.args.deadline} s', flush=True)
            raise Late(name)

    def run(self, name, cmd, amp='-', device=None, check=None, env=None, cwd=REPO):
        """Run one command line; `check(stdout)` returns the result text or raises Fail."""
        self.late(name)
        cmd = [str(c) for c in cmd]
        log = self.logs / f'{len(self.rows) + 1:02d}_{re.sub(r"[^A-Za-z0-9]+", "_", name)}_{amp}.log'
        t0 = time.time()
        if self.inproc and cmd[0].endswith('.py'):
            text, rc = run_inproc(cmd, env)
        else:
            cmd = [sys.executable, *cmd] if cmd[0].endswith('.py') else cmd
            try:
                p = subprocess.run(cmd, cwd=cwd, env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, timeout=self.args.step_timeout)
                text, rc = p.stdout, p.returncode
            except subprocess.TimeoutExpired as e:
                text, rc = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or ''), 'timeout'
        log.write_text(' '.join(cmd) + '\n\n' + text)
        dev = device or self.dev
        if rc != 0:
            self.fail(name, amp, dev, f'exit code {rc}', log, text)
        try:
            result = check(text) if check else 'ok'
        except Fail as e:
            self.fail(name, amp, dev, str(e), log, text)
        self.add(name, amp, dev, time.time() - t0, result)
        return text

    def call(self, name, fn, amp='-', device=None):
        """Run an in-process step; `fn()` returns the result text or raises."""
        self.late(name)
        t0 = time.time()
        try:
            result = fn()
        except Exception as e:
            import traceback
            log = self.logs / f'{len(self.rows) + 1:02d}_{re.sub(r"[^A-Za-z0-9]+", "_", name)}.log'
            log.write_text(traceback.format_exc())
            self.fail(name, amp, device or self.dev, f'{type(e).__name__}: {e}', log, traceback.format_exc())
        self.add(name, amp, device or self.dev, time.time() - t0, result)
        return result

    def add(self, name, amp, dev, sec, result, status='PASS'):
        self.rows.append(dict(step=name, amp=amp, device=str(dev), seconds=round(sec, 1), result=result, status=status))
        print(f'[{time.time() - self.t0:6.0f} s] {status} {name} ({dev}, amp {amp}, {sec:.1f} s): {result}', flush=True)
        self.finish(show=False, quiet=True)    # results so far on disk: a run stopped by its time limit keeps them

    def section(self, name, fn, *a):
        """Run one part of the check; past --deadline its steps left are skipped (listed as not run)."""
        try:
            return fn(*a)
        except Late:
            return None

    def fail(self, name, amp, dev, why, log, text):
        self.rows.append(dict(step=name, amp=amp, device=str(dev), seconds=None, result=why, status='FAIL'))
        print('\n'.join(text.splitlines()[-40:]), file=sys.stderr)
        print(f'\nFAIL {name} ({dev}, amp {amp}): {why}\n  log: {log}', file=sys.stderr)
        self.finish(failed=f'{name}: {why}')
        raise SystemExit(1)

    # ------------------------------------------------------------------ results
    def finish(self, failed=None, show=True, quiet=False):
        import torch
        info = common.machine(self.dev)
        res = dict(machine=info, dry_run=self.dry, rehearsal=self.args.rehearsal, device=self.dev,
                   torch=torch.__version__, command=' '.join(sys.argv), workdir=str(self.wd),
                   total_seconds=round(time.time() - self.t0, 1), failed=failed, not_run=self.not_run,
                   checks=self.rows, losses_by_amp=self.losses, throughput=self.tp,
                   goals={} if self.dry else goals(self.tp))
        self.out.mkdir(parents=True, exist_ok=True)
        if quiet:
            import contextlib
            import io
            with contextlib.redirect_stdout(io.StringIO()):
                common.save_results(self.name, res, self.out)
        else:
            common.save_results(self.name, res, self.out)
        md = markdown(res)
        from utils import atomic_write_text
        atomic_write_text(self.out / f'{self.name}.md', md)
        if show:
            print('\n' + md)
        return res


def clean_workdir(wd, keep_results=True):
    """Remove the outputs of an earlier run (a rerun must not pass on stale files); keep the corpus, its LLD
    store and the synthetic throughput stores, which are rebuilt identically."""
    if not wd.is_dir():
        return
    for p in wd.iterdir():
        if p.name == 'features':
            for f in p.iterdir():
                if f.name != 'lld':
                    shutil.rmtree(f, ignore_errors=True)
        elif p.name not in ('corpus', 'tp', 'data') and not (keep_results and p.name == 'results'):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink()


_SCRIPTS = {}


def run_inproc(cmd, env=None):
    """Dry run: call the script's main() in this interpreter with sys.argv = cmd -> (output, exit code)."""
    import contextlib
    import importlib
    import io
    import traceback
    path = REPO / cmd[0]
    if path not in _SCRIPTS:   # under its importable name, so that worker processes can unpickle its functions
        _SCRIPTS[path] = importlib.import_module('.'.join(path.relative_to(REPO).with_suffix('').parts))
    buf, rc = io.StringIO(), 0
    old_argv, old_env = sys.argv, dict(os.environ)
    try:
        os.environ.update(env or {})
        sys.argv = [str(path), *cmd[1:]]
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            r = _SCRIPTS[path].main()
        rc = r if isinstance(r, int) and not isinstance(r, bool) else 0
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        buf.write(f'\n{e.code}\n')
    except Exception:
        rc = 1
        buf.write(traceback.format_exc())
    finally:
        sys.argv = old_argv
        os.environ.clear()
        os.environ.update(old_env)
    return buf.getvalue(), rc


# ============================================================================ result checks
def read_log(folder):
    """The per-epoch/iteration log (*.log.csv) a training run wrote in `folder`."""
    import pandas as pd
    logs = sorted(Path(folder).glob('*.log.csv'), key=lambda p: p.stat().st_mtime)
    if not logs:
        raise Fail(f'no *.log.csv in {folder}')
    return pd.read_csv(logs[-1])


def finite_log(folder, n_rows, key='epoch'):
    df = read_log(folder)
    losses = df[[c for c in df.columns if c.endswith('loss')]].to_numpy(float)
    if len(df) != n_rows or not np.isfinite(losses).all():
        raise Fail(f'{folder}: expected {n_rows} finite log rows, got\n{df.to_string()}')
    return f'{key} {list(df[key])}: train loss ' + ' '.join(f'{v:.4f}' for v in df['train_loss'])


def one(folder, pattern):
    files = sorted(Path(folder).glob(pattern))
    if len(files) != 1:
        raise Fail(f'expected one {pattern} in {folder}, found {[f.name for f in files]}')
    return files[0]


def compare_stores(a, b, tol):
    from feature_store import FeatureStore
    sa, sb = FeatureStore(a), FeatureStore(b)
    if sa.names != sb.names or sa.lengths() != sb.lengths():
        raise Fail(f'{a} and {b} hold different utterances or lengths')
    d = max(float(np.abs(sa.get(n) - sb.get(n)).max()) for n in sa.names)
    if not d <= tol:
        raise Fail(f'max abs diff device vs cpu {d:.2e} > {tol:g}')
    return f'{len(sa)} utt x {sa.dim}-d, max abs diff device vs cpu {d:.1e}'


def compare_csv(a, b, cols, tol):
    import pandas as pd
    da, db = pd.read_csv(a), pd.read_csv(b)
    d = max(float(np.abs(da[c].to_numpy(float) - db[c].to_numpy(float)).max()) for c in cols)
    if len(da) != len(db) or not d <= tol:
        raise Fail(f'{a} vs {b}: max diff {d:.2e} > {tol:g} (or {len(da)} != {len(db)} rows)')
    return len(da), d


def predict_diff(a, b):
    """Max |a - b| over utterance predictions and chunk curves of two predict.py --json files."""
    ra, rb = (json.loads(Path(p).read_text())['results'] for p in (a, b))
    if [r['file'] for r in ra] != [r['file'] for r in rb] or any(r.get('error') for r in ra + rb):
        raise Fail(f'{a} / {b}: different files or failed files')
    d, same_ranks, n_ranks = 0.0, 0, 0
    for x, y in zip(ra, rb):
        for k, v in x.items():
            if k in ('Act', 'Dom', 'Val') or k.endswith(('_curve', '_rank_score')):
                d = max(d, float(np.abs(np.asarray(v, float) - np.asarray(y[k], float)).max()))
            elif k.endswith('_ranks'):
                same_ranks += list(v) == list(y[k])
                n_ranks += 1
    return len(ra), d, same_ranks, n_ranks


def rankseq_ok(path, names=None):
    r = json.loads(Path(path).read_text())
    bad = [k for k, v in r.items() if len(v['ChunkRankSeq']) != 22 or min(v['ChunkRankSeq']) < 1]
    if not r or bad:
        raise Fail(f'{path}: {len(r)} sequences, {len(bad)} malformed')
    return r


def goals(tp):
    out = {}
    if 'seq2seq_epoch' in tp:
        e = tp['seq2seq_epoch']
        out['seq2seq_epoch_150k_under_60s'] = e['device']['seconds_at_150k'] < GOAL_EPOCH_S
        step = tp.get('seq2seq_step_fp16', {}).get('device', {}).get('rate')   # the step alone, in-memory batch
        if step:
            out['seq2seq_loader_faster_than_step'] = e['device']['loader_utt_per_s'] >= step
    if 'mscr' in tp:
        m = tp['mscr']['device']
        out['mscr_5000_iters_under_5min'] = m['seconds_for_5000'] < GOAL_MSCR_S
        out['mscr_loader_faster_than_step'] = m['loader_it_per_s'] >= m['step_it_per_s']
    return out


def markdown(res):
    m = res['machine']
    where = f"{m.get('gpu', 'no GPU')} ({res['device']})" if not res['dry_run'] else f"CPU ({res['device']})"
    head = (f"### GPU check (`bash bench/gpu_check.sh{' --dry-run' if res['dry_run'] else ''}`)\n\n"
            + ("**CPU REHEARSAL, not a GPU run**: the device call's steps on the CPU at tiny sizes, from a copy of "
               "the tree and `.gpu_carry` without `../shared` or a package index; it proves the script runs, "
               "its numbers are no GPU numbers. " if res['dry_run'] else '')
            + f"Device: {where}; {m['cpu']}, {m['cores_usable']} cores; torch {res.get('torch', m['torch'])}, "
            f"Python {m['python']}; load average {m['load_avg_1min']} at the end; {res['total_seconds']:.0f} s in all."
            + (f"\n\n**FAILED**: {res['failed']}" if res['failed'] else '')
            + (f"\n\n**Not run** (past --deadline): {', '.join(res['not_run'])}" if res.get('not_run') else '')
            + '\n\n#### Correctness\n\n')
    t = ['| step | device | amp | s | result | |', '|---|---|---|---|---|---|']
    t += [f"| {r['step']} | {r['device']} | {r['amp']} | {r['seconds'] if r['seconds'] is not None else '-'} | "
          f"{str(r['result']).replace('|', '/')} | {r['status']} |" for r in res['checks']]
    lo = ['', '#### Training losses by --amp (same seed, data and steps)', '',
          '| run | ' + ' | '.join(AMPS) + ' |', '|---|' + '---|' * len(AMPS)]
    for run, by in res.get('losses_by_amp', {}).items():
        lo.append(f'| {run} | ' + ' | '.join(' '.join(f'{v:.6f}' for v in by.get(a, [])) or '-' for a in AMPS) + ' |')
    tp = ['', '#### Throughput (as the training scripts run: deterministic settings, warm-up, worker start-up '
          'included)', '', '| throughput | device | CPU cores | ratio | settings |', '|---|---|---|---|---|']
    for v in res['throughput'].values():
        tp.append(f"| {v['label']} | {v['device_text']} | {v['cpu_text']} | {v['ratio']} | {v.get('settings', '')} |")
    g = [''] + [f"- goal `{k}`: {'met' if ok else '**not met**'}" for k, ok in res['goals'].items()]
    g += ['- goals: not evaluated in a dry run'] if res['dry_run'] else []
    return head + '\n'.join(t + (lo if res.get('losses_by_amp') else []) + (tp if res['throughput'] else []) + g) + '\n'


# ============================================================================ correctness
def tiny_tokenizer(folder, corpus):
    """A WordPiece tokenizer built here from the corpus transcripts (whole lower-case words; no download, no
    text-model package: the lent machine has neither)."""
    import re as _re

    from transformers import BertTokenizerFast
    words = set()
    for f in (Path(corpus) / 'Transcripts').rglob('*.txt'):
        words.update(_re.findall(r"[a-z0-9']+|[^\sa-z0-9']", f.read_text().lower()))
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + sorted(words)
    (folder / 'vocab.txt').write_text('\n'.join(vocab) + '\n')
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)     # transformers 5
    if len(tok) != len(vocab):
        tok = BertTokenizerFast(vocab_file=str(folder / 'vocab.txt'), do_lower_case=True)    # transformers 4
    if len(tok) != len(vocab):
        raise Fail(f'the tokenizer holds {len(tok)} of the {len(vocab)} words of {folder / "vocab.txt"}')
    return tok


def tiny_models(wd, corpus):
    """A random-weight wav2vec2 and BERT saved as local model folders (no download)."""
    import torch
    from transformers import BertConfig, BertModel, Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model
    torch.manual_seed(0)
    w2v, bert = wd / 'models' / 'tiny_wav2vec2', wd / 'models' / 'tiny_bert'
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(32,) * 7, num_conv_pos_embedding_groups=4, feat_extract_norm='layer',
                         do_stable_layer_norm=True, vocab_size=10)
    Wav2Vec2Model(cfg).save_pretrained(w2v)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(w2v)
    tok = tiny_tokenizer(bert, corpus)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(bert)
    tok.save_pretrained(bert)
    return (f'wav2vec2 32-d, 2 layers -> {w2v.name}; BERT 32-d, 2 layers, {len(tok)}-word tokenizer from the '
            f'transcripts -> {bert.name}')


def correctness(c):
    wd, dev, W = c.wd, c.dev, c.size('workers')
    corpus, feats = wd / 'corpus', wd / 'features'
    X = ['--device', dev]
    no_tf32 = {'NVIDIA_TF32_OVERRIDE': '0'}
    if not (corpus / 'Labels' / 'labels_consensus.csv').exists():
        c.run('demo corpus', ['make_demo_corpus.py', '--out', corpus, '--n', c.size('corpus_utts'),
                              '--workers', os.cpu_count() if not c.dry else 2], device='cpu')
    c.run('extract lld', ['extract_features.py', '--corpus', corpus, '--feature', 'lld', '--out', feats / 'lld',
                          '--workers', os.cpu_count() if not c.dry else 2], device='cpu')
    C = ['--corpus', corpus, '--features', feats / 'lld', '--workers', W]
    C += ['--limit', c.size('limit')] if c.size('limit') else []
    c.call('tiny hf models', lambda: tiny_models(wd, corpus), device='cpu')
    for kind, model in (('wav2vec2', 'tiny_wav2vec2'), ('text', 'tiny_bert')):
        for d in dict.fromkeys([dev, 'cpu']):
            c.run(f'extract {kind}', ['extract_features.py', '--corpus', corpus, '--feature', kind, '--model',
                                      wd / 'models' / model, '--out', feats / f'{kind}_{d.replace(":", "")}',
                                      '--device', d, '--workers', 2, '--batch', 8], device=d, env=no_tf32)
        a, b = (feats / f'{kind}_{d.replace(":", "")}' for d in (dev, 'cpu'))
        c.call(f'{kind} {dev} = cpu', lambda a=a, b=b: compare_stores(a, b, 1e-3))
    pairs = wd / 'pref'
    c.run('preference labels', ['chunk_emotion_rankers/generate_preference_labels.py', '-emo', 'Act', '-set', 'all',
                                '--corpus', corpus, '--out', pairs, '--ratio', c.size('pref_ratio')], device='cpu')
    ranker = method1_ranker(c, C + X, pairs)
    rankseq = method1_rankseq(c, C + X, ranker)
    s2s = method1_seq2seq(c, C + X, rankseq)
    c.section('testing.py', method1_testing, c, C, s2s)
    c.section('predict.py with the released models', predict_check, c, corpus)
    c.section('MSCR', mscr_checks, c, corpus, feats)


def training_checks(c, script, cmd, epochs, tag):
    """The CUDA checks both training scripts share: `epochs` epochs with each --amp, torchrun (NCCL), and one
    epoch continued with --resume. cmd(ep, *extra) -> argv. Returns the --amp off checkpoint."""
    for amp in AMPS:
        out = c.wd / f'{tag}_{amp}'
        c.run(f'{script} {epochs} epoch{"s" if epochs > 1 else ""}', cmd(epochs, '--amp', amp, '--out', out), amp,
              check=lambda s, o=out, a=amp: keep_losses(c, script, a, o, finite_log(o, epochs)))
    ddp = c.wd / f'{tag}_ddp'
    c.run(f'torchrun {script} (2 processes)', torchrun(cmd(1, '--amp', 'fp16', '--out', ddp)), 'fp16',
          check=lambda s: finite_log(ddp, 1) + ddp_note(c), env=ddp_env(c))
    ck = c.wd / f'{tag}_resume' / f'{tag}.pth.tar'
    c.run(f'{script} 1 of 2 epochs', cmd(1, '--amp', 'fp16', '--checkpoint', ck), 'fp16',
          check=lambda s: finite_log(ck.parent, 1))
    c.run(f'{script} --resume', cmd(2, '--amp', 'fp16', '--checkpoint', ck, '--resume'), 'fp16',
          check=lambda s: finite_log(ck.parent, 2))
    return one(c.wd / f'{tag}_off', '*.pth.tar')


def keep_losses(c, run, amp, folder, text):
    """Note the run's training losses for the side-by-side table; -> text."""
    c.losses.setdefault(run, {})[amp] = [float(v) for v in read_log(folder)['train_loss']]
    return text


def ddp_env(c):
    """2 processes: over NCCL when the machine has a GPU for each, else sharing the GPU over gloo."""
    import torch
    if c.dev.startswith('cuda') and torch.cuda.device_count() < 2:
        return {'DDP_BACKEND': 'gloo'}
    return None


def ddp_note(c):
    return '; 2 processes on 1 GPU over gloo (NCCL not exercised)' if ddp_env(c) else \
        ('; 2 gloo processes on the CPU' if c.dev == 'cpu' else '; 2 processes over NCCL')


def method1_ranker(c, CX, pairs):
    def R(ep, *extra):
        return ['chunk_emotion_rankers/training_ranker.py', '-ep', ep, '-batch', c.size('ranker_batch'), '-emo', 'Act',
                '--pairs', pairs, '--pairs-per-epoch', c.size('ranker_pairs'), *CX, *extra]
    return training_checks(c, 'training_ranker.py', R, 1, 'ranker')


def method1_rankseq(c, CX, ranker):
    n, wd = c.size('tournament_utts'), c.wd / 'rank_tournament'

    def same(s):
        r = json.loads((wd / 'ranking.json').read_text())
        if r['ranks_identical'] != n or r['ranks_compared'] != n:
            raise Fail(f"batched ranks differ from the all-pairs tournament: {r['ranks_identical']}/{r['ranks_compared']}")
        return f"identical rank sequences {r['ranks_identical']}/{n} (batched vs 462-pass tournament, random ranker)"
    c.run('ranking sequences = tournament', ['bench/bench_ranking.py', '--device', c.dev, '--n-utts', c.size('rank_bench_utts'),
                                             '--naive-utts', n, '--batch', 32, '--workers', c.size('workers'),
                                             '--workdir', wd, '--out', wd, '--no-plot', '--threads', 0],
          'off', check=same, env={'NVIDIA_TF32_OVERRIDE': '0'})
    G = ['chunk_emotion_rankers/generate_ranking_seqence.py', '-ep', 1, '-batch', c.size('ranker_batch'), '-emo', 'Act',
         '--checkpoint', ranker, *CX]
    out = {}
    for amp in AMPS:
        out[amp] = c.wd / f'rankseq_{amp}'
        c.run('generate_ranking_seqence.py', G + ['-set', 'all', '--amp', amp, '--out', out[amp]], amp,
              check=lambda s, o=out[amp], a=amp: rank_agreement(o, out['off'], a))
    return out['off']


def rank_agreement(folder, ref, amp):
    r = rankseq_ok(Path(folder) / 'training_Act.json')
    if amp == 'off':
        return f'{len(r)} Train sequences of 22 ranks'
    r0 = rankseq_ok(Path(ref) / 'training_Act.json')
    same = sum(r[k]['ChunkRankSeq'] == r0[k]['ChunkRankSeq'] for k in r)
    return f'{len(r)} Train sequences; {same}/{len(r)} identical to --amp off'


def method1_seq2seq(c, CX, rankseq):
    def T(ep, *extra):
        return ['training.py', '-ep', ep, '-batch', c.size('s2s_batch'), '-emo', 'Act', '--rankseq', rankseq, *CX, *extra]
    return training_checks(c, 'training.py', T, 2, 's2s')


def method1_testing(c, C, s2s):
    T = ['testing.py', '-emo', 'Act', '--checkpoint', s2s, '-set', 'Test', *C]

    def metrics(folder):
        import pandas as pd
        df = pd.read_csv(Path(folder) / 'metrics.csv')
        if not np.isfinite(df['CCC'].to_numpy(float)).all():
            raise Fail(f'{folder}/metrics.csv: CCC not finite')
        return f"Test CCC {df['CCC'].iloc[0]:.4f} (N {df['N'].iloc[0]})"
    for amp in AMPS:
        out = c.wd / f'test_{amp}'
        c.run('testing.py', T + ['--device', c.dev, '--amp', amp, '--out', out], amp,
              check=lambda s, o=out: metrics(o), env={'NVIDIA_TF32_OVERRIDE': '0'} if amp == 'off' else None)
    c.run('testing.py (reference)', T + ['--device', 'cpu', '--amp', 'off', '--out', c.wd / 'test_cpu'], 'off',
          device='cpu', check=lambda s: metrics(c.wd / 'test_cpu'))

    def same():
        a = one(c.wd / 'test_off', '*_predictions.csv')
        cols = ['Pred'] + [f'Chunk{k:02d}' for k in range(1, 23)]
        n, d = compare_csv(a, c.wd / 'test_cpu' / a.name, cols, TOL)
        return f'{n} utterances x 23 values, max abs diff {c.dev} vs cpu {d:.1e} <= {TOL:g}'
    c.call(f'testing.py {c.dev} = cpu', same, 'off')


def predict_check(c, corpus):
    """predict.py --pretrained on the device vs the CPU on corpus files and one long (> 20 s) file."""
    pre = Path(c.args.pretrained)
    import soundfile as sf
    src = sorted((corpus / 'Audios').rglob('*.wav'))[:c.size('predict_files')]
    inp = c.wd / 'predict_in'
    inp.mkdir(exist_ok=True)
    for f in src:
        shutil.copy(f, inp / f.name)
    long = np.concatenate([sf.read(f, dtype='float32')[0] for f in src] * 8)[:16000 * 25]
    sf.write(inp / 'long_25s.wav', long, 16000)
    P = ['predict.py', inp, '--pretrained', pre, '--rankers', '--batch', 8]
    runs = [('predict.py (reference)', 'cpu', 'cpu', None), ('predict.py', c.dev, 'dev', {'NVIDIA_TF32_OVERRIDE': '0'}),
            ('predict.py TF32 default', c.dev, 'tf32', None)]
    for name, d, tag, env in runs:
        c.run(name, P + ['--device', d, '--out', c.wd / f'pred_{tag}.csv', '--json', c.wd / f'pred_{tag}.json'],
              device=d, env=env)

    def same(tag, strict):
        n, d, sr, nr = predict_diff(c.wd / f'pred_{tag}.json', c.wd / 'pred_cpu.json')
        if strict and not d <= TOL:
            raise Fail(f'max abs diff {c.dev} vs cpu {d:.2e} > {TOL:g}')
        return f'{n} files (one 25 s), max abs diff {c.dev} vs cpu {d:.1e}{f" <= {TOL:g}" if strict else ""}; ranks identical {sr}/{nr}'
    c.call(f'predict.py {c.dev} = cpu (TF32 off)', lambda: same('dev', True))
    c.call(f'predict.py {c.dev} vs cpu (TF32 default)', lambda: same('tf32', False))


def mscr_checks(c, corpus, feats):
    d = c.dev.replace(':', '')
    S = ['--model', 'mscr', '--corpus', corpus, '--audio-store', feats / f'wav2vec2_{d}', '--text-store',
         feats / f'text_{d}', '--device', c.dev, '--workers', c.size('workers')]
    it, B = c.size('mscr_iters'), c.size('mscr_batch')

    def T(iters, *extra):
        return ['training.py', *S, '--iters', iters, '--val-every', it // 2, '-batch', B, '--hidden',
                c.size('mscr_hidden'), '--ff', c.size('mscr_ff'), *extra]
    sweep = ['testing.py', *S, '-batch', B, '--sweep', '--missing-mode', 'frames,chunks,tokens,modality',
             '--sweep-fracs', c.size('sweep_fracs')]
    for amp in AMPS:
        ck = c.wd / f'mscr_{amp}' / 'mscr.pth.tar'
        c.run(f'MSCR {it} iterations', T(it, '--amp', amp, '--checkpoint', ck), amp,
              check=lambda s, o=ck.parent, a=amp: keep_losses(c, 'MSCR', a, o, finite_log(o, 2, 'iteration')))
        c.run('MSCR --sweep', sweep + ['--amp', amp, '--checkpoint', ck, '--out', ck.parent], amp,
              check=lambda s, o=ck.parent: sweep_ok(o))
    ck = c.wd / 'mscr_off' / 'mscr.pth.tar'
    test = ['testing.py', *S[:-4], '-batch', B, '--checkpoint', ck, '--amp', 'off', '-set', 'Test']
    for d in dict.fromkeys([c.dev, 'cpu']):
        c.run('testing.py --model mscr', test + ['--device', d, '--out', c.wd / f'mscr_test_{d.replace(":", "")}',
                                                 '--workers', c.size('workers')], 'off', device=d,
              env={'NVIDIA_TF32_OVERRIDE': '0'})
    c.call(f'MSCR test {c.dev} = cpu', lambda: mscr_same(c.wd, c.dev), 'off')
    again = c.wd / 'mscr_off_again' / 'mscr.pth.tar'
    c.run('MSCR --amp off again', T(it, '--amp', 'off', '--checkpoint', again), 'off',
          check=lambda s: same_weights(ck, again))
    ck, it_ddp = c.wd / 'mscr_ddp' / 'mscr.pth.tar', c.size('mscr_ddp_iters')
    c.run('torchrun training.py --model mscr (2 processes)', torchrun(T(it_ddp, '--amp', 'fp16', '--checkpoint', ck)),
          'fp16', check=lambda s: finite_log(ck.parent, -(-it_ddp // (it // 2)), 'iteration') + ddp_note(c),
          env=ddp_env(c))
    ck = c.wd / 'mscr_resume' / 'mscr.pth.tar'
    c.run('MSCR first half', T(it // 2, '--amp', 'fp16', '--checkpoint', ck), 'fp16',
          check=lambda s: finite_log(ck.parent, 1, 'iteration'))
    c.run('MSCR --resume', T(it, '--amp', 'fp16', '--checkpoint', ck, '--resume'), 'fp16',
          check=lambda s: finite_log(ck.parent, 2, 'iteration'))


def mscr_same(wd, dev):
    """The test CCCs of the --amp off MSCR model on the device and on the CPU (same stores) agree."""
    a, b = (json.loads(one(wd / f'mscr_test_{d.replace(":", "")}', '*_scores.json').read_text()) for d in (dev, 'cpu'))
    diff = max(abs(a[f'ccc_{e}'] - b[f'ccc_{e}']) for e in ('Act', 'Dom', 'Val'))
    if not diff <= TOL:
        raise Fail(f'test CCC {dev} vs cpu differs by {diff:.2e} > {TOL:g}')
    return f"{a['n']} Test utterances: CCC Act/Dom/Val {a['ccc_Act']:.4f}/{a['ccc_Dom']:.4f}/{a['ccc_Val']:.4f}, " \
           f"max diff {dev} vs cpu {diff:.1e} <= {TOL:g}"


def same_weights(a, b):
    """Whether two training runs with the same settings gave the same weights (reported, not fatal: MSCR on
    CUDA has kernels without a deterministic version, docs/reproducibility.md)."""
    import torch
    sa, sb = (torch.load(p, map_location='cpu', weights_only=True) for p in (a, b))
    d = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    return 'weights identical to the first run' if d == 0 else f'weights differ from the first run: max abs diff {d:.1e}'


def sweep_ok(folder):
    import pandas as pd
    df = pd.read_csv(one(folder, '*_sweep.csv'))
    if not np.isfinite(df['ccc_mean'].to_numpy(float)).all():
        raise Fail(f'{folder}: non-finite CCC in the sweep')
    clean = df[df['fraction'] == 0]['ccc_mean'].iloc[0]
    return f"{len(df)} sweep rows, modes {sorted(set(df['mode']))}; clean mean CCC {clean:.3f}"


def torchrun(cmd, nproc=2):
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', nproc,
            *[str(x) for x in cmd]]


# ============================================================================ throughput
def pool_store(path, n, dim, hop, seed, feature='lld', preset='published', model=None, pool_rows=100_000):
    """A FeatureStore of n utterances (2-11 s) whose index entries point into one shared pool of random
    rows: the reader only needs each entry to lie inside data.bin, so a 150k-utterance store costs
    pool_rows x dim floats of disk instead of ~29 GB. Shapes, lengths and the read path are a real store's."""
    import csv

    from feature_store import INDEX_COLS, FeatureStore, FeatureStoreWriter
    from utils import atomic_write_text
    path = Path(path)
    st = common.existing_store(path, n, dim)
    if st is not None:
        return st
    rng = np.random.default_rng(seed)
    lengths = common.utt_lengths(n, hop, common.MSP_MEAN_SEC, seed, min_sec=2.0, max_sec=11.0)
    pool_rows = max(pool_rows, 2 * int(lengths.max()))
    with FeatureStoreWriter(path, feature, dim, hop, preset, model, flush_every=10 ** 9, synthetic_pool=pool_rows) as w:
        for k in range(0, pool_rows, 10_000):
            w.add(f'pool_{k}', 1 + 2 * rng.standard_normal((min(10_000, pool_rows - k), dim), dtype=np.float32))
    offs = rng.integers(0, pool_rows - lengths + 1)
    with open(path / 'index.csv', 'w', newline='') as f:
        wr = csv.writer(f, lineterminator='\n')
        wr.writerow(INDEX_COLS)
        wr.writerows(zip(common.utt_names(n), offs.tolist(), lengths.tolist()))
    meta = json.loads((path / 'meta.json').read_text())
    atomic_write_text(path / 'meta.json', json.dumps({**meta, 'n_utterances': n}, indent=1) + '\n')
    return FeatureStore(path)


def feat_norm(store, names):
    """Train-scope feature normalisation from the statistics of `names` (the content is synthetic)."""
    from norm import FeatNorm, norm_stats
    mean, std = norm_stats(store, names)
    return FeatNorm(mean, std, 'train', 'synthetic:Train')


def rate_text(x, unit):
    return f'{common.fmt_rate(x)} {unit}'


def record(c, key, label, dev, cpu, unit, extra=''):
    """One side-by-side throughput row: dev/cpu dicts with 'rate' (+ anything else), and the settings it ran with."""
    st = c.settings
    settings = (f"{st['device']} vs {st['cpu']}; torch {st['torch']}; deterministic; batch {dev.get('batch', '-')}; "
                f"--amp {dev.get('amp', 'off')} (CPU off); {dev.get('workers', 0)} loader workers")
    c.tp[key] = dict(label=label, unit=unit, device=dev, cpu=cpu, settings=settings, settings_detail=dict(st),
                     device_text=rate_text(dev['rate'], unit) + extra,
                     cpu_text=rate_text(cpu['rate'], unit) + cpu.get('note', ''),
                     ratio=f"{dev['rate'] / cpu['rate']:.1f}x" if cpu['rate'] else '-')
    return f"{c.tp[key]['device_text']} vs CPU {c.tp[key]['cpu_text']}"


def throughput(c):
    import bench_pipeline as BP
    import bench_ranking as BR
    import torch
    dev, cpu = torch.device(c.dev), torch.device('cpu')
    W, seed, N = c.args.loader_workers or (1 if c.dry else 8), 0, c.size('big_utts')
    threads = c.args.cpu_threads or (1 if c.dry else len(os.sched_getaffinity(0)))
    from utils import set_seed
    set_seed(seed, threads)     # as the training scripts: deterministic algorithms, cuDNN deterministic, no benchmark
    print(f'throughput: {W} loader workers, CPU side on {threads} torch threads', flush=True)
    gpu = common.machine(c.dev).get('gpu', str(dev))
    c.settings = {'device': f'{gpu} ({dev})' if dev.type == 'cuda' else f'CPU ({dev})', 'torch': torch.__version__,
                  'cpu': f'{common.cpu_model()}, {threads} torch threads', 'deterministic': True, 'workers': W}
    ctx = {}

    def build():
        ctx['store'] = pool_store(c.wd / 'tp' / 'lld', N + max(2, N // 100), 130, 0.016, seed)
        ctx['fnorm'] = feat_norm(ctx['store'], ctx['store'].names[:5000])
        fr = sum(ctx['store'].lengths().values())
        return f'{len(ctx["store"]):,} utterances, {fr * 0.016 / 3600:.0f} h, {common.gb(fr * 520):.1f} GB as a real store'
    c.call('synthetic LLD store', build, device='cpu')
    c.call('throughput: ranking sequences', lambda: tp_ranking(c, ctx, BR, dev, cpu, W))
    c.call('Seq2Seq set-up (target curves)', lambda: tp_s2s_setup(c, ctx, BP, N), device='cpu')
    for amp in AMPS if dev.type == 'cuda' else ('off',):
        c.call('throughput: Seq2Seq step', lambda a=amp: tp_s2s_step(c, ctx, BP, dev, cpu, a), amp)
    c.call('throughput: Seq2Seq epoch', lambda: tp_s2s_epoch(c, ctx, BP, dev, cpu, W), 'fp16')
    c.call('throughput: MSCR', lambda: tp_mscr(c, BP, dev, cpu, W, seed), 'fp16')


def tp_ranking(c, ctx, BR, dev, cpu, W):
    import dataloader as D
    store, fnorm, B = ctx['store'], ctx['fnorm'], c.size('rank_batch')
    m = D.chunk_frames(store.hop)
    res = {}
    for d, n in ((dev, c.size('rank_utts')), (cpu, c.size('rank_cpu_utts'))):
        model = BR.build_ranker(c.wd / 'tp' / 'ranker.pth.tar', 0).to(d).eval()
        BR.batched_ranks(model, store, store.names[:min(n, 2 * B)], fnorm, m, d, B, 0)    # warm-up (kernels, allocator)
        ranks, sec = BR.batched_ranks(model, store, store.names[:n], fnorm, m, d, B, W)
        res[d.type] = dict(utts=n, seconds=sec, rate=n / sec, ranks=ranks, batch=B)
    common_names = [k for k in res['cpu']['ranks'] if k in res[dev.type]['ranks']]
    same = sum(res['cpu']['ranks'][k] == res[dev.type]['ranks'][k] for k in common_names)
    for r in res.values():
        r.pop('ranks')
    return record(c, 'ranking', f'ranking sequences (batch {B})', res[dev.type], res['cpu'], 'utt/s',
                  f'; {same}/{len(common_names)} identical to CPU')


def tp_s2s_setup(c, ctx, BP, N):
    ctx['s2s'] = BP.seq2seq_setup(c.wd / 'tp' / 's2s', N, 0, store=ctx['store'], fnorm=ctx['fnorm'])
    return f"{len(ctx['s2s']['train']):,} Train utterances with target curves"


def tp_s2s_step(c, ctx, BP, dev, cpu, amp):
    B = c.size('s2s_tp_batch')
    n, sec = BP.seq2seq_model_only(ctx['s2s'], B, dev, amp, 0, c.size('s2s_reps'))
    d = dict(utts=n, seconds=sec, rate=n / sec, batch=B, amp=amp)
    if 'cpu_step' not in ctx:
        n, sec = BP.seq2seq_model_only(ctx['s2s'], B, cpu, 'off', 0, 1 if c.dry else 2)
        ctx['cpu_step'] = dict(utts=n, seconds=sec, rate=n / sec, batch=B)
    return record(c, f'seq2seq_step_{amp}', f'Seq2Seq training step (batch {B}, published model, --amp {amp})', d,
                  ctx['cpu_step'], 'utt/s')


def s2s_pass(setup, batch, workers, device, amp, max_batches=None, with_model=True):
    """Loader (+ training step) over the Train split, or its first max_batches batches -> (utts, seconds)."""
    import bench_pipeline as BP

    import dataloader as D
    m = setup['m']
    loader = BP.seq2seq_loader(setup['train'], m, batch, workers, device, 0)
    step = BP.seq2seq_step_fn(device, amp, 0)[1] if with_model else None
    n, t0 = 0, time.perf_counter()
    for b, (x, lengths, curve, mu, _) in enumerate(loader):
        if max_batches and b >= max_batches:
            break
        if with_model:
            step(x, lengths, curve, mu, m)
        else:
            D.to_chunks(x, lengths, m, device)
        n += len(lengths)
    common.sync(device)
    sec = time.perf_counter() - t0
    del loader
    return n, sec


def tp_s2s_epoch(c, ctx, BP, dev, cpu, W):
    s, B, N = ctx['s2s'], c.size('s2s_tp_batch'), c.size('big_utts')
    n_l, t_l = s2s_pass(s, B, W, dev, 'fp16', c.size('loader_batches'), with_model=False)
    n, sec = s2s_pass(s, B, W, dev, 'fp16')
    d = dict(utts=n, seconds=sec, rate=n / sec, seconds_at_150k=sec * 150_000 / n, loader_utt_per_s=n_l / t_l,
             utt_per_s=n / sec, loader_utts=n_l, workers=W, batch=B, amp='fp16')
    n_c, t_c = s2s_pass(s, B, W, cpu, 'off', c.size('cpu_epoch_batches'))
    cp = dict(utts=n_c, seconds=t_c, rate=n_c / t_c, seconds_at_150k=t_c * 150_000 / n_c, extrapolated=True,
              note=f' ({n_c} utt, extrapolated: {t_c * 150_000 / n_c / 3600:.1f} h per 150k epoch)')
    return record(c, 'seq2seq_epoch', f'Seq2Seq epoch over {N:,} utterances (batch {B}, {W} workers)', d, cp,
                  'utt/s', f' = {sec:.0f} s per epoch ({n:,} utt); loader alone {common.fmt_rate(n_l / t_l)} utt/s')


def mscr_pass(setup, batch, workers, device, amp, seed, iters, with_model=True):
    """Loader (+ training step) for `iters` iterations, timed as s2s_pass times an epoch: from before the
    DataLoader's workers start -> (utterances, seconds)."""
    import bench_pipeline as BP
    step = BP.mscr_step_fn(setup, device, amp, seed)[1] if with_model else None
    common.sync(device)
    n, t0 = 0, time.perf_counter()
    stream = BP.mscr_loader(setup['ds'], batch, workers, device, seed, iters)
    for _ in range(iters):
        b = next(stream)
        if with_model:
            step(b)
        else:
            for k in ('a', 't', 't_pad', 'y'):
                b[k].to(device, non_blocking=True)
        n += len(b['y'])
    common.sync(device)
    sec = time.perf_counter() - t0
    del stream
    return n, sec


def tp_mscr(c, BP, dev, cpu, W, seed):
    n, B, it = c.size('mscr_tp_utts'), c.size('mscr_tp_batch'), c.size('mscr_tp_iters')
    wd = c.wd / 'tp' / 'mscr'
    # bench_pipeline.mscr_setup reuses a store of the right size and dim: give it a pooled one (saves ~2.5 GB)
    pool_store(wd / 'wav2vec2', n, 1024, 0.02, seed, 'wav2vec2', None, 'synthetic', pool_rows=20_000)
    s = BP.mscr_setup(wd, n, seed, 1024, 0.02, 768)
    bs = min(B, len(s['ds']))
    n_l, t_l = mscr_pass(s, bs, W, dev, 'fp16', seed, it, with_model=False)
    n_m, t_m = BP.mscr_model_only(s, bs, dev, 'fp16', seed, max(1, it // 4))
    n_b, t_b = mscr_pass(s, bs, W, dev, 'fp16', seed, it)
    r = it / t_b
    d = dict(iters=it, seconds=t_b, rate=r, it_per_s=r, loader_it_per_s=it / t_l,
             step_it_per_s=n_m / bs / t_m, seconds_for_5000=MSCR_PUBLISHED_ITERS / r, batch=bs, workers=W,
             width=256, amp='fp16')
    ci = c.size('mscr_cpu_iters')
    _, t_c = mscr_pass(s, bs, W, cpu, 'off', seed, ci)
    cp = dict(iters=ci, seconds=t_c, rate=ci / t_c, seconds_for_5000=MSCR_PUBLISHED_ITERS * t_c / ci, extrapolated=True,
              note=f' ({ci} it, extrapolated: {MSCR_PUBLISHED_ITERS * t_c / ci / 3600:.1f} h for 5000)')
    return record(c, 'mscr', f'MSCR training (batch {bs}, width 256, 1024-d audio + 768-d text)', d, cp, 'it/s',
                  f' = {d["seconds_for_5000"]:.0f} s for 5000; loader alone {d["loader_it_per_s"]:.1f} it/s, '
                  f'step alone {d["step_it_per_s"]:.1f} it/s')


# ============================================================================ MSCR study (optional)
def mscr_study(c):
    out = c.out / 'gpu_mscr'
    cmd = MSCR_STUDY + ['--device', c.dev, '--out', out, '--images', out, '--work', c.wd / 'mscr_study', '--data', c.wd / 'data']
    if c.dry:
        cmd = [x for x in cmd if x != '--published'] + ['--iters', 2, '--val-every', 1, '--n', 48, '--limit', 8]
    c.run('MSCR missing-data study', cmd)


# ============================================================================ main
def get_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--dry-run', action='store_true', help='walk every step with --device cpu on tiny sizes '
                   '(results in WORKDIR/results, never bench/results)')
    p.add_argument('--device', default='cuda', help='the device under test (default cuda)')
    p.add_argument('--workdir', default=str(REPO / 'runs' / 'gpu_check'), help='scratch folder (default runs/gpu_check; '
                   'the corpus there is reused by a rerun)')
    p.add_argument('--out', default=None, help='folder of gpu.json / gpu.md (default bench/results; dry run: WORKDIR/results)')
    p.add_argument('--pretrained', default=str(PRETRAINED), help="the authors' released models for the predict.py "
                   'check (default ../shared/pretrained/Chunk-Level-Emotion-Retrieval, or shared/... in the repository)')
    p.add_argument('--loader-workers', type=int, default=None, help='DataLoader workers of the throughput runs '
                   '(default 8; dry run 1)')
    p.add_argument('--cpu-threads', type=int, default=None, help='torch threads of the CPU side (default: all usable '
                   'cores; dry run 1)')
    p.add_argument('--subprocess', action='store_true', help='dry run: launch every script as its own process, as '
                   'the GPU run does (default: call main() in this interpreter, which saves the imports)')
    p.add_argument('--step-timeout', type=int, default=600, help='seconds one command may take (default 600)')
    p.add_argument('--rehearsal', action='store_true', help='with --dry-run: the CPU rehearsal of bash bench/gpu_check.sh '
                   '--dry-run (results bench/results/gpu_cpu_rehearsal.json / .md)')
    p.add_argument('--deadline', type=int, default=None, help='seconds after which the steps not yet started are '
                   'skipped and listed as not run (default 500, inside the 10 minutes of one device call; with '
                   '--dry-run none; 0 = none)')
    p.add_argument('--skip-correctness', action='store_true', help='only the throughput part')
    p.add_argument('--skip-throughput', action='store_true', help='only the correctness part')
    p.add_argument('--mscr-study', action='store_true', help='then run the MSCR missing-data study at the '
                   'published size (bench_mscr_missing.py; not part of the 8 minutes)')
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.deadline is None:
        args.deadline = 0 if args.dry_run else 500
    import torch
    if not args.dry_run and (not args.device.startswith('cuda') or not torch.cuda.is_available()):
        raise SystemExit(f'error: --device {args.device} but torch {torch.__version__} sees no CUDA device; run this on '
                         f'a GPU machine (bench/README.md) or rehearse on the CPU with bash bench/gpu_check.sh --dry-run')
    if not args.skip_correctness and not (Path(args.pretrained) / 'NormTerm').is_dir():
        raise SystemExit(f'error: {args.pretrained} holds no release (NormTerm/ missing); run bash bench/gpu_check.sh '
                         f"--prepare (copies it into .gpu_carry/) or pass --pretrained DIR")
    os.chdir(REPO)
    os.environ.update(TQDM_DISABLE='1', MPLBACKEND='Agg')
    c = Checker(args)
    if c.dry:
        torch.set_num_threads(1)
    print(common.machine_line(common.machine(c.dev)) + (' [DRY RUN: cpu, tiny sizes]' if c.dry else ''), flush=True)
    if not args.skip_correctness:
        c.section('correctness', correctness, c)
    if not args.skip_throughput:
        c.section('throughput', throughput, c)
    c.finish(show=not args.mscr_study)      # saved before the long study, so an interrupted study loses nothing
    if args.mscr_study:
        mscr_study(c)
        c.finish()
    print(f'gpu check passed in {time.time() - c.t0:.0f} s; results in {c.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
