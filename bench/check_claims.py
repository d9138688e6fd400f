"""Claims = JSON: numbers written in README.md, bench/*.md and docs/*.md recomputed from the committed JSONs in
bench/results, and the sentence expected in the text checked to be there.

    python bench/check_claims.py            # prints OK / MISSING per claim; exit status 1 if any is missing

Each claim is (document, text): the text is built from the JSON values with the rounding the document uses,
so a changed JSON or an edited sentence that no longer follows it shows up as MISSING. The finetune tables
are compared row by row (mean and seed std of every metric).
"""
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RES = REPO / 'bench' / 'results'


def load(name):
    return json.loads((RES / name).read_text())


def f3(v):
    return f'{v:.3f}'


def finetune_claims():
    r = load('finetune_emodb.json')
    label = {'zeroshot': '(a) zero-shot (deterministic)', 'scratch': '(b) scratch', 'finetune': '(c) fine-tuned',
             'freeze': '(d) frozen LSTM'}
    rows = {(s['cond'], s['norm']): s for s in r['summary']}
    out = []
    for (cond, norm), s in rows.items():
        cells = [f'{f3(s[k][0])} ± {f3(s[k][1])}' for k in ('ccc_Act', 'ccc_Dom', 'ccc_Val', 'auc_Act')]
        line = f'| {label[cond]} | {norm} | {s["label_norm"]} | '
        out.append(('bench/RESULTS_ACCURACY.md', line + ' | '.join(
            f'**{c}**' if (cond, norm) == ('scratch', 'speaker') else c for c in cells)))
        out.append(('bench/results/finetune_emodb.md', line + ' | '.join(cells)))
    trained = [s for s in r['summary'] if s['cond'] != 'zeroshot']
    spread = {(s['cond'], s['norm']): max(s[k][1] for k in ('ccc_Act', 'ccc_Dom', 'ccc_Val', 'auc_Act'))
              for s in trained}
    least = min(spread, key=spread.get)
    assert least[0] == 'freeze', spread          # the sentence below states it
    fr = max(v for (c, _), v in spread.items() if c == 'freeze')
    ft = max(v for (c, _), v in spread.items() if c == 'finetune')
    dom = min(trained, key=lambda s: s['ccc_Dom'][1])
    assert dom['cond'] == 'finetune'
    sent = (f'the frozen-LSTM rows have the smallest seed-to-seed spread of the trained rows (seed std ≤ {fr:.3f} '
            f'on every metric), fine-tuning the next smallest (≤ {ft:.3f}; the smallest on Dom, '
            f'{dom["ccc_Dom"][1]:.3f})')
    out += [('bench/RESULTS_ACCURACY.md', sent), ('README.md', sent)]
    sp = {c: sorted(s['seconds_per_model'] for s in trained if s['cond'] == c) for c in ('scratch', 'finetune', 'freeze')}
    out.append(('bench/RESULTS_ACCURACY.md', f'{sp["freeze"][0]:.1f}–{sp["freeze"][1]:.1f} s per model against '
                f'{sp["finetune"][0]:.1f}–{sp["finetune"][1]:.1f} s\n  fine-tuned and {sp["scratch"][0]:.1f}–'
                f'{sp["scratch"][1]:.1f} s from scratch'))
    g = {c: {n: rows[(c, n)] for n in ('train', 'speaker')} for c in ('scratch', 'finetune', 'freeze')}
    d = {c: round(g[c]['speaker']['ccc_Act'][0] - g[c]['train']['ccc_Act'][0], 3) for c in g}
    out.append(('bench/RESULTS_ACCURACY.md', f'Act: +{d["scratch"]:.3f} from scratch, +{d["finetune"]:.3f} '
                f'fine-tuned, +{d["freeze"]:.3f} frozen'))
    out.append(('README.md', f'frozen\n({f3(g["freeze"]["train"]["ccc_Val"][0])} → '
                f'{f3(g["freeze"]["speaker"]["ccc_Val"][0])})'))
    out.append(('bench/RESULTS_ACCURACY.md', f'Act {f3(g["finetune"]["train"]["ccc_Act"][0])} vs '
                f'{f3(g["scratch"]["train"]["ccc_Act"][0])}'))
    return out


def crosscorpus_claims():
    r = load('crosscorpus.json')
    name = {'released': 'released v1.6 (MSP-Podcast)', 'emodb': 'Emo-DB', 'ravdess': 'RAVDESS 01–04'}
    out = []
    sys.path.insert(0, str(REPO))
    import metrics as M
    new = r['bootstrap'].get('method') == M.METHOD        # intervals of the current kind: written with them
    show = M.fmt_ci if new else (lambda st: f3(st['value']))
    for key, c in r['cells'].items():
        tr, te = key.split('__')
        m = c['metrics']
        vals = ' | '.join(show(m[e]['ccc']) for e in r['emos'])
        out.append(('README.md', f'| {name[tr]} → {name[te]}' + (' (Test split)' if tr == te else '')
                    + f' | {c["n"]} ({m["Act"]["n_speakers"]}) | {vals} | {show(m["Act"]["auc_arousal"])} |'))
    em = r['cells']['emodb__emodb']['metrics']['Act']['ccc']['value']
    out.append(('README.md', f"unseen speakers (Act {f3(em)};"))
    return out


def crossval_claims():
    r = load('crossval_ravdess.json')
    p = r['pooled']['Act']
    folds = [f['Act']['CCC'] for f in r['per_fold'].values()]
    sys.path.insert(0, str(REPO))
    import metrics as M
    if p['bootstrap'].get('method') == M.METHOD:          # intervals of the current kind: written with them
        v, auc = M.fmt_ci(p['ccc']), M.fmt_ci(p['auc_arousal'])
        v = '**' + v.replace(' [', '** [', 1)
    else:
        v, auc = f"**{f3(p['ccc']['value'])}**", f3(p['auc_arousal']['value'])
    return [('README.md', f"Act CCC {v} pooled over {p['n']} utterances"),
            ('README.md', f'per fold {f3(min(folds))}–{f3(max(folds))}'),
            ('README.md', f"arousal AUC {auc}")]


def coverage_table(r):
    """Markdown: coverage (mean width) of the speaker intervals per model, statistic, method and speaker count."""
    ks = (2, 3, 4, 6, 10, 20, 30)
    cov = {(c['model'], c['speakers']): c for c in r['cells'] if c['data'] == 'clustered' and c['unit'] == 'speakers'}
    lines = ['| coverage (mean width) at k test speakers | ' + ' | '.join(str(k) for k in ks) + ' |',
             '|---|' + '---|' * len(ks)]
    for model in ('test', 'acted'):
        for stat, sname in (('ccc', 'CCC'), ('auc', 'AUC'), ('diff', 'CCC difference')):
            for meth, mname in (('percentile', 'percentile (before)'), ('z-t', 'printed now')):
                lines.append(f'| {model}: {sname}, {mname} | ' + ' | '.join(
                    f"{cov[(model, k)][stat][meth]['coverage']:.2f} ({cov[(model, k)][stat][meth]['mean_width']:.2f})"
                    for k in ks) + ' |')
    return '\n'.join(lines)


def coverage_claims():
    r = load('coverage.json')
    cov = {(c['model'], c['speakers'], c['unit']): c for c in r['cells'] if c['data'] == 'clustered'}
    t = {k: cov[('test', k, 'speakers')]['ccc'] for k in (2, 4, 10, 30)}
    old = ', '.join(f"{t[k]['percentile']['coverage']:.2f} with {k}" for k in (2, 4, 10, 30))
    new = ', '.join(f"{t[k]['z-t']['coverage']:.2f} with {k}" for k in (2, 4, 10, 30))
    sp = [c for c in r['cells'] if c['unit'] == 'speakers']
    rng = {m: (min(c['diff'][m]['coverage'] for c in sp), max(c['diff'][m]['coverage'] for c in sp))
           for m in ('z-t', 'percentile')}
    w = {k: t[k]['z-t']['mean_width'] for k in (2, 4, 10)}
    return [(doc, s) for doc in ('README.md', 'docs/protocols.md') for s in (old, new)] + [
        ('docs/protocols.md', coverage_table(r)),
        ('docs/ssl.md', f"coverage is {rng['z-t'][0]:.3f}–{rng['z-t'][1]:.3f} for 2 to 30 speakers"),
        ('docs/ssl.md', f"covered {rng['percentile'][0]:.3f}–{rng['percentile'][1]:.3f}"),
        ('docs/protocols.md', f"mean CCC interval spans {w[2]:.2f} (it knows little more than the sign), with 4 "
                              f"{w[4]:.2f}, with 10 {w[10]:.2f}"),
        ('README.md', f'mean width {w[2]:.2f} in CCC'),
        ('docs/protocols.md', f"from **{r['min_speakers_measured']} test speakers**")]


def other_claims():
    cv = {c['corpus']: c for c in load('convert.json')['results']}
    load_avg = load('convert.json')['machine']['load_avg_1min']
    rk, pf = load('ranking.json'), load('preference.json')
    rel = load('released_emodb.json')
    conv = [('bench/README.md', f"RAVDESS **{cv['ravdess']['files_per_second']} files/s**"),
            ('README.md', f"RAVDESS actors 01–04: **{cv['ravdess']['files_per_second']} files/s**")]
    conv += [('docs/corpora.md', f"RAVDESS {cv['ravdess']['files_per_second']} files/s"),
             ('docs/corpora.md', f"Emo-DB {cv['emodb']['files_per_second']} files/s"),
             ('bench/README.md', f"Emo-DB **{cv['emodb']['files_per_second']} files/s**"),
             ('README.md', f"Emo-DB: {cv['emodb']['files_per_second']} files/s"),
             ('README.md', f'load average of {load_avg:.1f}')]
    return conv + [
        ('README.md', f"{rk['batched']['utt_per_s']:.1f} utt/s, {rk['n_utts']} utterances"),
        ('README.md', f"**{rk['speedup']:.0f}×**, identical ranks"),
        ('README.md', f"{rk['allpairs']['comparisons_per_utt']} pair passes per utterance"),
        ('README.md', f"**{pf['fast']['seconds']:.1f} s** on 2 threads ({pf['fast_1thread']['seconds']:.1f} s on 1)"),
        ('README.md', f"**{pf['speedup_vs_published']:,.0f}×** vs the published operations"),
        ('bench/README.md', f"**{pf['fast']['seconds']:.2f} s** on 2 threads ({pf['fast_1thread']['seconds']:.2f} s on 1"),
        ('README.md', f"AUC {rel['predict']['arousal_auc']:.2f} on Emo-DB")]


def table_claims():
    """The MSCR missing-data table (README), the Emo-DB table (RESULTS_ACCURACY), the norm and ranking rows."""
    import numpy as np
    r = load('mscr_missing_demo5/mscr_missing.json')
    out = [('README.md', f"wall time {r['wall_seconds']:,.0f} s")]
    for key, label in (('clean', 'clean CCC'), ('audio frames 75 %', 'drop: 75 % of the audio frames'),
                       ('audio chunks 75 %', 'drop: 75 % of the audio chunks'), ('whole audio', 'drop: whole audio'),
                       ('whole text', 'drop: whole text')):
        cells = []
        for ck in ('last', 'best'):
            for c in ('words', 'dynamic', 'crops'):
                v = [p[key] for p in r['per_seed'] if p['ckpt'] == ck and p['cond'] == c]
                cells.append(f'{np.mean(v):.3f} ± {np.std(v, ddof=1):.3f}')
        out.append(('README.md', f'| {label} | ' + ' | '.join(cells) + ' |'))
    e = {s['system']: s for s in load('emodb.json')['summary']}
    for sys_, label in (('rank', '(a) Seq2Seq + ranker curves'), ('const', '(b) Seq2Seq, alpha = 1 (utterance mean only)')):
        out.append(('bench/RESULTS_ACCURACY.md', f'| {label} | ' + ' | '.join(
            f'{f3(e[sys_][k][0])} ± {f3(e[sys_][k][1])}' for k in ('ccc_Act', 'ccc_Dom', 'ccc_Val', 'auc_Act'))))
    out.append(('bench/RESULTS_ACCURACY.md', '| (c) ridge on mean+std of LLDs (deterministic) | ' + ' | '.join(
        f'**{f3(e["ridge"][k][0])}**' for k in ('ccc_Act', 'ccc_Dom', 'ccc_Val', 'auc_Act'))))
    out.append(('bench/RESULTS_ACCURACY.md', f"Default run, {load('emodb.json')['wall_seconds'] / 60:.1f} min"))
    n = load('norm.json')
    big = n['rows'][-1]
    out.append(('bench/README.md', f"**{big['streaming']['peak_mb']:.1f} MB** heap peak, "
                f"**{big['streaming']['maxrss_mb']:.0f} MB** resident, {big['streaming']['seconds']:.1f} s | "
                f"{big['concat']['peak_mb']:,.0f} MB heap, {big['concat']['maxrss_mb']:,.0f} MB resident, "
                f"{big['concat']['seconds']:.1f} s | **{n['memory_ratio_at_max']:.0f}x** less heap, "
                f"**{n['rss_ratio_at_max']:.1f}x** less resident memory, {n['time_ratio_at_max']:.1f}x faster"))
    rk = load('ranking.json')
    out.append(('bench/README.md', f"**{rk['batched']['utt_per_s']:.1f} utt/s** ({rk['batched']['seconds']:.1f} s) | "
                f"{rk['allpairs']['utt_per_s']:.2f} utt/s (tournament on {rk['naive_utts']} utt, "
                f"{rk['allpairs']['seconds_measured']:.1f} s; **extrapolated**: {rk['allpairs']['seconds_all']:.0f} s "
                f"for {rk['n_utts']}) | **{rk['speedup']:.0f}x** faster; ranks identical "
                f"{rk['ranks_identical']}/{rk['ranks_compared']}"))
    return out


def first_contact_claims():
    """README's two commands: the default demo (results/demo_default.json) and the suite (results/suite.json)."""
    d = load('demo_default.json')
    total = d['total_seconds']
    step = {s['step'].split()[0]: s for s in d['steps']}
    retr = d['retrieval']['results']
    out = [('README.md', f"**{total // 60} min {total % 60} s** (`total_seconds` {total:,}"),
           ('README.md', f"ranker {step['5/9']['seconds']} s, Seq2Seq {step['7/9']['seconds']} s"),
           ('README.md', f"peak resident memory of any step {d['peak_rss_mb'] / 1000:.2f} GB"),
           ('README.md', f"Act test CCC {d['seq2seq_ccc'][0]['CCC']:.4f}, ranker validation macro-F1 "
                         f"{d['ranker_val_macro_f1']['Act']:.4f}, retrieval pair accuracy "
                         f"{retr['testing_Act.json']['pair_acc_macro']:.3f} (loudness baseline "
                         f"{retr['loudness']['pair_acc_macro']:.3f}, random {retr['random']['pair_acc_macro']:.3f})")]
    ps = load('pair_sampling.json')
    out += [('bench/README.md', f"(**x{x['work_ratio']:.2f}**)") for x in ps['rows']]
    if (RES / 'suite.json').is_file():
        t = load('suite.json')
        out += [('README.md', f"**{t['wall_seconds'] // 60:.0f} min {t['wall_seconds'] % 60:.0f} s** (`wall_seconds` "
                              f"{t['wall_seconds']:.1f}"),
                ('README.md', f"{t['passed']} passed, {t['skipped']} skipped")]
    return out


def main():
    claims = (finetune_claims() + crosscorpus_claims() + crossval_claims() + coverage_claims()
              + other_claims() + table_claims() + first_contact_claims())
    texts = {}
    bad = 0
    for doc, text in claims:
        body = texts.setdefault(doc, ' '.join((REPO / doc).read_text().split()).lower())
        ok = ' '.join(text.split()).lower() in body
        bad += not ok
        print(f"{'OK     ' if ok else 'MISSING'} {doc}: {' '.join(text.split())[:110]}")
    print(f'RESULT {len(claims) - bad}/{len(claims)} claims found as their JSON gives them')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
