"""The summary JSON of one `bash run_demo.sh` run (run_demo.sh calls it last; README's demo numbers come from
the one that `SHIP=1 EMO=all MSCR=1 bash run_demo.sh` writes to bench/results/demo.json).

    python bench/demo_summary.py --times T.tsv --metrics runs/demo/testing/metrics.csv \\
        --rankers runs/demo/trained_ranker_model --retrieval runs/demo/retrieval.json --out runs/demo/demo.json

Holds: the machine, the toolkit revision, the run's settings, the wall time of every step (seconds, from the
step start times run_demo.sh logged) and its peak resident memory (MB, the largest of its commands,
from /usr/bin/time), the test/validation CCC of every Seq2Seq model (testing.py's
metrics.csv), each ranker's best validation macro-F1 (its provenance record) and the retrieval check
(evaluate_retrieval.py's JSON).
"""
import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402

from bench.common import machine  # noqa: E402
from checkpoints import toolkit_revision  # noqa: E402
from utils import atomic_write_text  # noqa: E402


def step_times(path):
    """Step start times (seconds since the run's start, name) -> [{'step', 'seconds'}] and the total."""
    rows = [line.rstrip('\n').split('\t', 1) for line in Path(path).read_text().splitlines() if line.strip()]
    starts = [(int(t), name) for t, name in rows]
    steps = [{'step': name, 'seconds': nxt - t} for (t, name), (nxt, _) in zip(starts, starts[1:])]
    return steps, (starts[-1][0] - starts[0][0]) if starts else 0


def step_rss(path):
    """{step name: peak resident memory (MB) over the step's commands} from the '<KB>\t<step>' lines that
    run_demo.sh's /usr/bin/time wrapper appended (one per command)."""
    peak = {}
    if path and Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            kb, _, name = line.partition('\t')
            if kb.strip().isdigit():
                peak[name] = max(peak.get(name, 0), round(int(kb) / 1024))
    return peak


def summary(times, metrics, rankers, retrieval, settings, rss=None):
    steps, total = step_times(times)
    peak = step_rss(rss)
    for s in steps:
        if s['step'] in peak:
            s['peak_rss_mb'] = peak[s['step']]
    out = {'command': 'bash run_demo.sh', 'settings': settings, 'toolkit_revision': toolkit_revision(),
           'machine': machine(), 'total_seconds': total, 'steps': steps}
    if peak:
        out['peak_rss_mb'] = max(peak.values())
    if metrics and Path(metrics).is_file():
        df = pd.read_csv(metrics)
        out['seq2seq_ccc'] = [{k: r[k] for k in ('Attr', 'Split', 'N', 'CCC', 'Pearson_r') if k in r}
                              for r in df.to_dict('records')]
    out['ranker_val_macro_f1'] = {}
    for rec in sorted(Path(rankers).glob('*_ranker.meta.json')) if rankers else []:
        r = json.loads(rec.read_text())
        out['ranker_val_macro_f1'][r['attributes'][0]] = (r.get('result') or {}).get('val_macro_f1')
    if retrieval and Path(retrieval).is_file():
        out['retrieval'] = json.loads(Path(retrieval).read_text())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--times', required=True, help='TSV of step start times (seconds) and step names')
    p.add_argument('--metrics', default=None, help="testing.py's metrics.csv")
    p.add_argument('--rankers', default=None, help='folder of the ranker checkpoints and their records')
    p.add_argument('--retrieval', default=None, help="evaluate_retrieval.py's JSON ('' = none)")
    p.add_argument('--rss', default=None, help="peak memory per command: '<KB>\\t<step name>' lines (run_demo.sh)")
    p.add_argument('--settings', default='', help='the run\'s settings, as "KEY=value ..."')
    p.add_argument('--out', required=True, help='summary JSON to write')
    a = p.parse_args(argv)
    settings = dict(kv.split('=', 1) for kv in a.settings.split() if '=' in kv)
    res = summary(a.times, a.metrics, a.rankers, a.retrieval, settings, a.rss)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(res, indent=1, default=str) + '\n')
    print(f'demo summary: {a.out} ({res["total_seconds"]} s in all)')


if __name__ == '__main__':
    main()
