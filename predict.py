"""Emotion of any recording: utterance-level Act/Dom/Val on the 1-7 scale and chunk-level emotion curves.

  python predict.py speech.wav --pretrained ../Chunk-Level-Emotion-Retrieval --plot plots/
  python predict.py my_recordings/ --out results.csv --json results.json --checkpoint my_run/ --rankers
  python predict.py talk.wav --model mscr --checkpoint trained_mscr_model/MSCR_....pth.tar --text "..."

Models: `--pretrained DIR` = a clone of the authors' repository (its v1.6 models and NormTerm, checked by
SHA-256); `--checkpoint DIR|FILE` = your own training.py output (its .meta.json record holds the
normalisation statistics; a model without one needs --norm DIR); neither = the demo models of the
repository, trained on synthetic speech (announced on the console and in the outputs). Each model is
checked to be the attribute asked for (-emo) and to match the LLDs computed here (docs/pretrained.md).
`--model mscr` runs an audio-text MSCR checkpoint instead (utterance level only; transcript from --text,
--transcript or a <name>.txt next to the audio; without one the text modality is treated as missing).
Feature normalisation (--feature-norm, norm.py): default what the model was trained with; 'published' /
'train' the statistics of the release / of the model's training corpus; 'corpus' the statistics of the
files given; 'speaker' per-speaker statistics of the files given (speaker = the sub-folder of each file,
or --speakers CSV with columns file,speaker). Statistics from under 30 s of audio are flagged.
Labels are mapped back with the model's label statistics (or --norm DIR).

Pipeline per window (docs/method1.md): LLDs of the model's preset -> z-norm, NaN -> 0, clip [-3, 3] -> pad
to >= 62 frames -> 22 chunks of 62 frames (1 s) -> one Seq2Seq prediction per chunk (the curve) ->
utterance = mean of the 22 chunks -> de-normalised. Values outside the 1-7 scale are clipped and counted
per file (column n_clipped); --no-clip gives the raw model outputs. Any format soundfile reads, any
sample rate; channels are mixed to mono (a silent channel is left out), resampled to 16 kHz. Clips
shorter than 1 s are zero-padded to 62 frames, so their 22 chunks are identical and the curve is flat.

Input checks (column `warning`, summary at the end; see audio.py and docs/pretrained.md): no speech found,
clipped audio, very low level (active speech level), band-limited audio, a silent channel, a file shorter than
its header claims.

Long files: a file up to --max-seconds (20) is one window, as in the published code. A longer file is
cut into windows of --window seconds (10) that overlap by at least --overlap seconds (5), spread evenly
from start to end. The file's curve is sampled every --grid seconds (0.5) between the first and last
chunk centre by linear interpolation inside each window, blended across windows with triangular weights.
The utterance value of a long file is the time-average of that curve. With --rankers the ranker score of
each chunk (g = f1 - f0) is stitched the same way and ranked over the whole curve (rank 1 = most emotional).

Batch mode: directories are searched recursively for audio files; files are processed -batch at a time
with one forward pass per model per batch. A file that fails is listed with its reason at the end and in
the CSV's `error` column; the rest are processed. The exit code is 1 when every file failed, 2 on a setup
error (models, normalisation, output paths). No output may be an input (a recording, its transcript,
--transcript, --speakers, a model or NormTerm file) or another output (--out, --json, the PNGs of --plot).
Ctrl-C or SIGTERM: the results of the files finished so far are written (the file in progress is left out)
and the exit code is 130 (SIGINT) or 143 (SIGTERM).
"""
import csv
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

import checkpoints as C
import interrupts
import norm as N
from cli import _number, add_unfinished_arg, nonneg_float, parser, positive_float, positive_int, run_script
from errors import ToolkitError
from inference import MSCREngine, Seq2SeqEngine
from outputs import check_outputs, check_parent, files_under, output_lock
from plots import plot_file
from utils import EMOS, atomic_write_text, get_device

AUDIO_EXTS = {'.wav', '.flac', '.ogg', '.oga', '.opus', '.mp3', '.aiff', '.aif', '.au', '.caf', '.w64', '.rf64'}


# ----------------------------------------------------------------------------- inputs and outputs
def list_inputs(paths):
    """Files as given plus audio files found recursively in directories (sorted); errors for missing paths."""
    files, missing = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob('*') if q.is_file() and q.suffix.lower() in AUDIO_EXTS
                           and not any(part.startswith('.') for part in q.relative_to(p).parts))
            if not found:
                missing.append((p, f"{p}: no audio files found (looked for {', '.join(sorted(AUDIO_EXTS))})"))
            files += found
        elif p.exists():
            files.append(p)
        else:
            missing.append((p, f"{p}: no such file or folder"))
    return files, missing


def check_writable(path, flag):
    """Fail before any work when an output path cannot be written (names the path and the flag)."""
    path = Path(path)
    if flag != '--plot' and path.is_dir():
        raise ToolkitError(f"{flag} {path}: is a folder; give a file name, e.g. {flag} {path / ('results' + ('.json' if flag == '--json' else '.csv'))}")
    if flag == '--plot' and path.exists() and not path.is_dir():
        raise ToolkitError(f"{flag} {path} is a file, not a folder; --plot names the folder the PNGs go to: choose "
                           f"another {flag}")
    check_parent(path, flag)
    target = path if flag == '--plot' else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target, prefix='.predict_write_test')
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ToolkitError(f"{flag} {path}: cannot write there ({e.strerror or e}); choose a writable "
                           f"location, e.g. {flag} ./{path.name}") from None


def read_paths(args, files):
    """[(path, what)]: everything predict.py reads -- the recordings, their sidecar transcripts, --transcript,
    --speakers, and the files of every model folder (--checkpoint, --ranker-dir, --norm, --pretrained, the
    repository's demo models) -- which no output may replace."""
    out = [(p, 'an input recording') for p in files]
    out += [(p.with_suffix('.txt'), 'the transcript of an input') for p in files if p.with_suffix('.txt').is_file()]
    out += [(q, w) for q, w in ((args.transcript, 'the --transcript file'), (args.speakers, 'the --speakers table'))
            if q]
    folders = [(C.SEQ2SEQ_DIR, 'a demo model file'), (C.RANKER_DIR, 'a demo ranker file'),
               (C.REPO / 'trained_mscr_model', 'a demo MSCR model file'), (C.REPO / 'NormTerm', 'a NormTerm file')]
    for flag in ('checkpoint', 'ranker_dir', 'norm', 'pretrained'):
        spec = getattr(args, flag)
        if not spec:
            continue
        what = f"a file of --{flag.replace('_', '-')}"
        if flag == 'pretrained':   # the release's model folders, not the whole clone
            folders += [(Path(spec) / sub, what) for sub in ('NormTerm', 'trained_seq2seq_model_v1.6',
                                                             'chunk_emotion_rankers')]
            continue
        for q in {spec.replace('{emo}', e) for e in EMOS} if '{emo}' in spec else {spec}:
            q = Path(q)
            if q.is_dir():
                folders.append((q, what))
            out += [(q, what), (C.sibling(q, '.meta.json'), f'the record of --{flag}')] if q.is_file() else []
    for folder, what in folders:
        out += [(q, what) for q in files_under(folder)]
    return out


def plan_plots(args, files):
    """{str(file): PNG path}: one PNG per input in --plot DIR, names made unique in input order."""
    used = set()
    return {str(p): Path(args.plot) / plot_name(p, used) for p in files} if args.plot else {}


def check_output_paths(args, files):
    """No output may be an input (a recording, a transcript, a model file, ...) or another output: --out,
    --json, --plot and the PNGs it will hold are compared as resolved paths, before any work."""
    pngs = plan_plots(args, files)
    check_outputs([(png, f'--plot (the PNG of {p})') for p, png in pngs.items()]
                  + [(args.out, '--out'), (args.json, '--json'), (args.plot, '--plot')], read_paths(args, files))


def plot_name(path, used):
    name = Path(path).stem
    n, i = name, 1
    while n in used:
        n, i = f"{name}_{i}", i + 1
    used.add(n)
    return n + '.png'


def row_for_csv(r, emos, rankers, curves=True):
    out = {'file': r['file'], 'duration': r.get('duration')}
    for e in emos:
        out[e] = r.get(e)
    if curves:
        for e in emos:
            out[f'{e}_curve'] = r.get(f'{e}_curve')
        out['chunk_times'] = r.get('chunk_times')
    for e in emos:
        if e in rankers:
            out[f'{e}_ranks'] = r.get(f'{e}_ranks')
    out['n_windows'] = r.get('n_windows')
    if 'transcript' in r:
        out['transcript'] = r['transcript']
    for k in ('n_clipped', 'n_out_of_scale', 'warning'):
        if k in r:
            out[k] = r[k]
    out['error'] = r.get('error', '')
    for k, v in out.items():
        if isinstance(v, (np.ndarray, list)):
            v = np.asarray(v)
            out[k] = json.dumps([int(x) for x in v] if v.dtype.kind in 'iu' else [round(float(x), 4) for x in v])
        elif isinstance(v, float):
            out[k] = round(v, 4)
    return out


def to_jsonable(r):
    out = {}
    for k, v in r.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, (np.floating, np.integer)):
            v = v.item()
        out[k] = v
    return out


def write_outputs(rows, args, engine, partial=''):
    prov = {**engine.provenance(), **({'partial': partial} if partial else {})}
    table = [row_for_csv(r, engine.emos, engine.rankers, curves=isinstance(engine, Seq2SeqEngine)) for r in rows]
    table = [{**t, **prov} for t in table]
    if not table:
        return
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for t in table for k in t))
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(table)
    atomic_write_text(args.out, buf.getvalue())
    if args.json:
        meta = {**engine.meta(), **({'partial': partial} if partial else {})}
        atomic_write_text(args.json, json.dumps({'meta': meta, 'results': [to_jsonable(r) for r in rows]},
                                                indent=1, allow_nan=False) + '\n')


# ----------------------------------------------------------------------------- main
def build_parser():
    ap = parser(__doc__)
    ap.add_argument('inputs', nargs='+', help='audio files and/or folders (searched recursively)')
    src = ap.add_mutually_exclusive_group()
    src.add_argument('--pretrained', metavar='DIR',
                     help="root of a clone of the authors' repository (Chunk-Level-Emotion-Retrieval): its "
                          "v1.6 models and NormTerm, checked by SHA-256")
    src.add_argument('--checkpoint', metavar='PATH',
                     help="your own models: a folder with LSTM_epoch*_EmoRankerSeq_<Emo>.pth.tar (and rankers), one "
                          "file (with one -emo), or a path with '{emo}'; each needs its .meta.json record or --norm. "
                          "Default: the demo models (synthetic speech). With --model mscr: an MSCR checkpoint file "
                          "or folder (default trained_mscr_model/)")
    ap.add_argument('--ranker-dir', metavar='DIR', help='folder with *_<Emo>_ranker.pth.tar for --rankers (default: '
                    'the --checkpoint folder, the release of --pretrained, or the demo rankers)')
    ap.add_argument('--norm', metavar='DIR', help="NormTerm folder whose statistics replace the models' own")
    ap.add_argument('--upstream', metavar='DIR', help='models trained on SSL features (docs/ssl.md): the upstream '
                    'folder (or hub name) they were trained on, checked by the SHA-256 of its weights')
    ap.add_argument('-emo', '--emo', default='all', help='Act, Dom, Val, a comma list, or all (default)')
    ap.add_argument('--rankers', action='store_true',
                    help='also run the chunk emotion rankers: per-chunk ranks (1 = most emotional chunk)')
    ap.add_argument('--model', choices=['seq2seq', 'mscr'], default='seq2seq',
                    help='seq2seq: method 1, audio only (default); mscr: audio-text MSCR model')
    txt = ap.add_mutually_exclusive_group()
    txt.add_argument('--text', help='transcript of a single input file (MSCR only)')
    txt.add_argument('--transcript', metavar='FILE',
                     help='transcript file (MSCR only): plain text for a single input, or a CSV with columns '
                          'file,text for many')
    ap.add_argument('--out', default='results.csv', help='CSV of per-file results (default results.csv)')
    ap.add_argument('--json', metavar='FILE', help='also write the results as JSON (for programs)')
    ap.add_argument('--plot', metavar='DIR', help='write one PNG per file (waveform + emotion curves) into DIR')
    ap.add_argument('--feature-norm', choices=list(N.SCOPES), default=None,
                    help="feature statistics: 'published' / 'train' (the release's / the model's training corpus's), "
                         "'corpus' (all files given), 'speaker' (per speaker of the files given: sub-folder or "
                         "--speakers). Default: what the model was trained with")
    ap.add_argument('--speakers', metavar='CSV', help="file,speaker table for --feature-norm speaker (default: the "
                    "sub-folder of each file is its speaker)")
    ap.add_argument('--no-clip', action='store_true', help='report raw model outputs, not clipped to the 1-7 scale')
    ap.add_argument('--device', default=None, help='cpu, cuda, cuda:1 (default: CUDA when available)')
    ap.add_argument('-batch', '--batch', dest='batch', type=positive_int, default=16,
                    help='files per batch (one forward pass per model per batch)')
    ap.add_argument('--max-seconds', type=positive_float, default=20.0,
                    help='files up to this many seconds are one window (default 20)')
    ap.add_argument('--window', type=positive_float, default=10.0, help='window length in s for longer files (default 10)')
    ap.add_argument('--overlap', type=nonneg_float, default=5.0, help='minimum window overlap in s (default 5)')
    ap.add_argument('--grid', type=_number(float, 0.01, 1.0), default=0.5,
                    help='time step in s of the stitched curve of long files, 0.01-1 (default 0.5; the utterance '
                         'value is the curve\'s time-average, so a step beyond one chunk (1 s) would change it)')
    add_unfinished_arg(ap)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.batch < 1:
        raise ToolkitError('-batch must be >= 1')
    if not (0 <= args.overlap < args.window <= args.max_seconds):
        raise ToolkitError(f'need 0 <= --overlap ({args.overlap}) < --window ({args.window}) <= --max-seconds '
                           f'({args.max_seconds})')
    device = get_device(args.device)
    files, missing = list_inputs(args.inputs)
    if not files:
        raise ToolkitError('nothing to do: ' + '; '.join(m for _, m in missing))
    check_output_paths(args, files)         # no output replaces an input or another output
    for path, flag in ((args.out, '--out'), (args.json, '--json'), (args.plot, '--plot')):
        if path:
            check_writable(path, flag)      # fail fast on outputs, inputs and models before any work
    with output_lock(args.out, f'the results {args.out}'):     # a second run on the same --out stops, naming this one
        return run(args, files, missing, device)


def run(args, files, missing, device):
    engine = MSCREngine(args, files, device) if args.model == 'mscr' else Seq2SeqEngine(args, files, device)
    t0 = time.time()
    rows, interrupted = process(args, files, engine)
    order = {str(p): i for i, p in enumerate(files)}
    rows.sort(key=lambda r: order.get(r['file'], 0))
    rows = [{'file': str(p), 'error': m} for p, m in missing] + rows
    partial = ''
    if interrupted:      # the outputs say so in every row and list every file not processed
        done = {r['file'] for r in rows}
        left = [str(p) for p in files if str(p) not in done]
        partial = f'PARTIAL: the run was interrupted; {len(left)} of {len(files)} files not processed'
        rows += [{'file': p, 'error': 'not processed: the run was interrupted before this file'} for p in left]
    write_outputs(rows, args, engine, partial)
    summary(rows, engine, args, time.time() - t0)
    if interrupted:
        print(f'{partial} (listed in {args.out} with the error "not processed")', file=sys.stderr)
        return interrupted
    return 0 if any(not r.get('error') for r in rows) else 1


def process(args, files, engine):
    """Run the engine over `files` in batches, plotting as it goes -> (rows, interrupted): interrupted is 0, or
    the exit code of the signal that stopped the run (130 SIGINT, 143 SIGTERM)."""
    rows, pngs = [], plan_plots(args, files)
    bar = tqdm(total=len(files), desc='predict', unit='file')
    try:
        for b in range(0, len(files), args.batch):
            group = list(enumerate(files))[b:b + args.batch]
            for p, sig, r in engine(group):
                if sig is not None and args.plot:
                    png = pngs[str(p)]
                    try:
                        plot_file(sig, r, png)
                        r['plot'] = str(png)
                    except Exception as e:  # a plot failure must not lose the predictions
                        r['plot_error'] = f"{png}: plot failed ({type(e).__name__}: {e})"
                        print(f"warning: {r['plot_error']}", file=sys.stderr)
                rows.append(r)
            bar.update(len(group))
    except KeyboardInterrupt as e:     # Ctrl-C or SIGTERM (interrupts.py): the file in progress is left out
        print(f"\ninterrupted: writing the {len(rows)} results so far (the file in progress is left out)",
              file=sys.stderr)
        return rows, interrupts.exit_code(e)
    finally:
        bar.close()
        engine.close()
    return rows, False


def summary(rows, engine, args, seconds):
    ok = [r for r in rows if not r.get('error')]
    errs = [r for r in rows if r.get('error')]
    if ok and len(rows) <= 20:
        for r in ok:
            print(f"{r['file']}: " + '  '.join(f"{e} {r[e]:.2f}" for e in engine.emos) + f"  ({r['duration']:.2f} s)")
    print(f"{len(ok)}/{len(rows)} files predicted in {seconds:.1f} s -> {args.out}"
          + (f", {args.json}" if args.json else '') + (f", plots in {args.plot}" if args.plot else ''))
    clipped = [r for r in ok if r.get('n_clipped')]
    if clipped:
        print(f"{len(clipped)} file(s) had values outside the 1-7 scale, clipped (column n_clipped; --no-clip for "
              f"raw outputs)")
    warned = [r for r in ok if r.get('warning')]
    if warned:
        print(f"{len(warned)} file(s) with input warnings (column 'warning'; their values may mean little):",
              file=sys.stderr)
        for r in warned:
            print(f"  {r['file']}: {r['warning']}", file=sys.stderr)
    if errs:
        print(f"{len(errs)} file(s) failed (listed with the reason; also in the 'error' column of {args.out}):",
              file=sys.stderr)
        for r in errs:
            print(f"  {r['error']}", file=sys.stderr)
    if 'demo' in engine.provenance()['model_source']:
        print(f'NOTE: {C.DEMO_NOTE}', file=sys.stderr)
    if engine.provenance().get('model_finished') is False:
        print(f"NOTE: {engine.provenance()['model_note']} (column model_finished in {args.out})", file=sys.stderr)


if __name__ == '__main__':
    sys.exit(run_script(main))
