"""IEMOCAP (Busso et al., Language Resources and Evaluation 2008) as distributed (IEMOCAP_full_release):

    SessionN/sentences/wav/<dialog>/<turn>.wav                      16 kHz turns
    SessionN/dialog/EmoEvaluation/<dialog>.txt                      labels
    SessionN/dialog/transcriptions/<dialog>.txt                     'TURN [start-end]: text'
    SessionN/sentences/ForcedAlignment/<dialog>/<turn>.wdseg        word alignment (frames of 10 ms)

EmoEvaluation: per turn a consensus line `[start - end]<TAB>TURN<TAB>CATEGORY<TAB>[V, A, D]` (V, A, D the
evaluators' mean on 1-5), then the evaluators' category lines `C-E1:<TAB>Neutral; Frustration;<TAB>(comment)`
and attribute lines `A-E1:<TAB>val 3; act 2; dom  2;<TAB>(comment)`. Raters whose name is a speaker code
(F1, M1, ...) are the actors' self-evaluations, not listener ratings: left out by default
(--self-evaluations keeps them, as workers self-F1, ...).
- Per-rater rows (labels_detailed.csv, LabelSource = raters): every listener's val/act/dom, mapped from 1-5 to
  1-7 linearly (1 + (x - 1) * 1.5), with the category of that rater's C- line as EmoDetail class. A rater line
  with a missing or non-numeric value is skipped and listed. Consensus EmoAct/EmoVal/EmoDom: the distributed
  [V, A, D] mapped the same way. EmoClass: the category code as distributed (neu, fru, ang, sad, hap, exc,
  sur, fea, dis, oth, xxx; xxx = no agreement and oth kept as they are); Category: the unified name.
- Labels/category_votes.csv: every C- line (rater, categories, comment, whether a self-evaluation).
- Transcripts from the dialog transcription; ForceAligned TextGrids from the .wdseg files: word rows
  `SFrm EFrm SegAScr Word`, a word lasting from SFrm * 10 ms to (EFrm + 1) * 10 ms; pronunciation variants
  WORD(2) are written WORD, words are lower-cased, <s>, </s>, <sil> and ++NOISE++ tokens become silence.
- Columns: Session, Dialog, Mode (improvised | scripted), Start, End. Speakers: Ses01F, Ses01M, ... (session +
  the gender letter of the turn's last part).
- Folds: leave one session out (5); fold k tests session k and validates on session k+1.
- Accounting: every block and every audio file is converted or listed: a block repeated with other values, a
  turn name in two dialog files, a dialog filed under another session folder than its name says, audio
  without a block, a second line of one rater, a value outside 1-5 (a rater line is dropped; a consensus
  attribute is left empty and noted, never clipped).
"""
import re
from pathlib import Path

import pandas as pd

from corpora import common
from corpora.common import MSP_CLASS, LayoutError, Utt, five_to_seven, session_folds

NAME = 'iemocap'
CODES = {'neu': 'neutral', 'fru': 'frustration', 'ang': 'anger', 'sad': 'sadness', 'hap': 'happiness',
         'exc': 'excitement', 'sur': 'surprise', 'fea': 'fear', 'dis': 'disgust', 'oth': 'other',
         'xxx': 'no_agreement'}
WORD_CATS = {'neutral': 'neutral', 'frustration': 'frustration', 'anger': 'anger', 'sadness': 'sadness',
             'happiness': 'happiness', 'excited': 'excitement', 'surprise': 'surprise', 'fear': 'fear',
             'disgust': 'disgust', 'other': 'other'}
NUM = r'[-+]?\d+(?:\.\d*)?'
CONS_RE = re.compile(rf'^\[\s*({NUM})\s*-\s*({NUM})\s*\]\s+(\S+)\s+(\S+)\s+\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]\s*$')
RATER_RE = re.compile(r'^([CA])-([^:\s]+)\s*:\s*(.*)$')
TRANS_RE = re.compile(r'^(\S+)\s+\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s*:\s*(.*)$')
SELF_RE = re.compile(r'^[FM]\d+$')
TURN_RE = re.compile(r'^(Ses\d\d)[FM]_(impro|script)\w*_([FM])\w*$')
SILENT = {'<s>', '</s>', '<sil>', 'sil', ''}
EXTRA = ['Session', 'Dialog', 'Mode', 'Start', 'End']
SCALE = (1.0, 5.0)


def check_layout(src):
    src = Path(src)
    sessions = sorted(p for p in src.glob('Session[0-9]*') if (p / 'dialog' / 'EmoEvaluation').is_dir())
    if not sessions:
        raise LayoutError(f'{src} is not IEMOCAP as distributed (IEMOCAP_full_release): expected Session1 ... '
                          f'Session5 folders, each with dialog/EmoEvaluation/<dialog>.txt, dialog/transcriptions/ '
                          f'and sentences/wav/<dialog>/<turn>.wav')
    return sessions


def parse_attributes(text):
    """'val 3; act 2; dom  2;' -> {'val': 3.0, 'act': 2.0, 'dom': 2.0} (a missing/bad value -> None)."""
    out = {}
    for key in ('val', 'act', 'dom'):
        m = re.search(rf'\b{key}\s*([^;\t(]*)', text)
        try:
            out[key] = float(m.group(1)) if m and m.group(1).strip() else None
        except ValueError:
            out[key] = None
    return out


def parse_evaluation(path, report):
    """One EmoEvaluation file -> {turn: {'start', 'end', 'code', 'vad', 'cats': {rater: ([cats], comment)},
    'attrs': {rater: ({'val', 'act', 'dom'}, where)}, 'where', 'text'}}; unparsable lines are listed in
    `report`, a second line of one rater in one turn is listed (the first kept), and a turn whose block
    appears twice is kept once when the blocks are identical (noted) and None (listed) when they differ."""
    turns, cur, twice = {}, None, {}
    for n, raw in enumerate(Path(path).read_text(encoding='utf-8', errors='replace').splitlines(), 1):
        line = raw.strip()
        where = f'{Path(path).name}:{n}'
        if not line or line.startswith('%'):
            continue
        if line.startswith('['):
            m = CONS_RE.match(line)
            if not m:
                report.skip(where, f'unparsable or truncated consensus line {line[:80]!r} (its turn is left out)')
                cur = None
                continue
            t0, t1, turn, code, v, a, d = m.groups()
            cur = {'start': float(t0), 'end': float(t1), 'code': code, 'vad': (float(v), float(a), float(d)),
                   'cats': {}, 'attrs': {}, 'where': where, 'text': [line]}
            if turn in turns:
                twice.setdefault(turn, [turns[turn]]).append(cur)
            else:
                turns[turn] = cur
            continue
        m = RATER_RE.match(line)
        if not m:
            report.skip(where, f'unrecognised line {line[:80]!r}')
            continue
        if cur is None:
            report.skip(where, 'rater line without a readable consensus line before it')
            continue
        cur['text'].append(line)
        kind, rater, rest = m.groups()
        body, _, comment = rest.partition('(')
        lines = cur['cats'] if kind == 'C' else cur['attrs']
        if rater in lines:
            report.skip(where, f'second {kind}- line of rater {rater} in one turn (the first is kept)')
            continue
        if kind == 'C':
            cats = [c.strip() for c in body.split(';') if c.strip()]
            lines[rater] = (cats, comment.rstrip(')').strip())
        else:
            lines[rater] = (parse_attributes(body), where)
    for turn, blocks in twice.items():
        places = ', '.join(b['where'] for b in blocks)
        if all(b['text'] == blocks[0]['text'] for b in blocks):
            report.note(turn, f'consensus block repeated identically ({places}); read once')
        else:
            report.skip(turn, f'{len(blocks)} different consensus blocks ({places}): which one holds the labels is '
                              f'not clear, turn left out')
            turns[turn] = None
    return turns


def read_transcripts(path):
    out = {}
    if path.is_file():
        for line in path.read_text(encoding='utf-8', errors='replace').splitlines():
            m = TRANS_RE.match(line.strip())
            if m:
                out[m.group(1)] = m.group(2).strip()
    return out


def read_wdseg(path):
    """.wdseg -> [(start s, end s, word)] (silence tokens dropped), or None when missing/unreadable."""
    if not path.is_file():
        return None
    words = []
    for line in path.read_text(encoding='utf-8', errors='replace').splitlines():
        f = line.split()
        if len(f) < 4 or not (f[0].isdigit() and f[1].isdigit()):
            continue
        w = re.sub(r'\(\d+\)$', '', f[3]).strip()
        if w.lower() in SILENT or w.startswith('++') or w.startswith('<'):
            continue
        words.append((int(f[0]) * 0.01, (int(f[1]) + 1) * 0.01, w.lower()))
    return words


def _scaled(x):
    """A 1-5 value -> 1-7, or None when it lies outside 1-5 (left out, never clipped)."""
    return five_to_seven(x) if x is not None and SCALE[0] <= x <= SCALE[1] else None


def read(src, report, self_evaluations=False, speakers=None, **_):
    sessions = check_layout(src)
    src = Path(src)
    utts, raters, votes = [], [], []
    labelled = {}                      # turn -> [(session folder, dialog)] of every EmoEvaluation block
    parsed = []
    for sdir in sessions:
        sess = f'Ses{int(sdir.name[7:]):02d}'
        for ev in sorted((sdir / 'dialog' / 'EmoEvaluation').glob('*.txt')):
            turns = parse_evaluation(ev, report)
            for turn in turns:
                labelled.setdefault(turn, []).append(f'{sdir.name}/{ev.stem}')
            parsed.append((sdir, sess, ev, turns))
    for turn, places in labelled.items():
        if len(places) > 1:
            report.skip(turn, f'the same turn name in {len(places)} dialog files ({", ".join(places)}): which one is '
                              f'the recording is not clear, left out')
    for sdir, sess, ev, turns in parsed:
        dialog = ev.stem
        dm = re.match(r'^Ses(\d\d)', dialog)
        if dm and f'Ses{dm.group(1)}' != sess:
            for turn in turns:
                report.skip(turn, f'dialog {dialog} of session {int(dm.group(1))} filed under {sdir.name}: left '
                                  f'out (the session decides the folds; move the dialog to Session'
                                  f'{int(dm.group(1))})')
            continue
        text = read_transcripts(sdir / 'dialog' / 'transcriptions' / f'{dialog}.txt')
        for turn, t in turns.items():
            if t is None or len(labelled[turn]) > 1:       # listed above
                continue
            m = TURN_RE.match(turn)
            if not m:
                report.skip(turn, f'turn name not SesNN[FM]_<impro|script>..._[FM]NNN ({ev.name})')
                continue
            spk = f'{m.group(1)}{m.group(3)}'
            if speakers and spk not in speakers:
                continue
            if m.group(1) != sess:
                report.skip(turn, f'turn of {m.group(1)} in a dialog file of {sess} ({ev.name}): left out')
                continue
            if t['code'] not in CODES:
                report.skip(turn, f'unknown category code {t["code"]!r} ({ev.name})')
                continue
            for rater, (cats, comment) in t['cats'].items():
                votes.append((f'{turn}.wav', rater, '; '.join(cats), comment, bool(SELF_RE.match(rater))))
            for rater, (vals, where) in t['attrs'].items():
                is_self = bool(SELF_RE.match(rater))
                if is_self and not self_evaluations:
                    continue
                missing = [k for k, x in vals.items() if x is None]
                bad = [k for k, x in vals.items() if x is not None and _scaled(x) is None]
                if missing or bad:
                    why = f'without a value for {", ".join(missing)}' if missing else \
                        f'with {", ".join(f"{k} {vals[k]:g}" for k in bad)} outside the 1-5 scale (not clipped)'
                    report.skip(f'{turn} rater {rater}', f'attribute line {where} {why} (rating left out)')
                    continue
                cats = t['cats'].get(rater, ([], ''))[0]
                cls = MSP_CLASS.get(WORD_CATS.get(cats[0].lower(), 'other'), 'Other') if cats else ''
                a, v, d = (five_to_seven(vals[k]) for k in ('act', 'val', 'dom'))
                raters.append((turn, f'self-{rater}' if is_self else rater, cls, cats[1:], a, v, d, 'raters'))
            v5, a5, d5 = t['vad']
            act, val, dom = _scaled(a5), _scaled(v5), _scaled(d5)
            bad = [f'{k} {x:g}' for k, x, y in (('V', v5, val), ('A', a5, act), ('D', d5, dom)) if y is None]
            if len(bad) == 3:
                report.skip(turn, f'consensus [V, A, D] {t["where"]} all outside the 1-5 scale: left out')
                continue
            if bad:
                report.note(turn, f'consensus {", ".join(bad)} ({t["where"]}) outside the 1-5 scale: left empty, '
                                  f'not clipped; the other attributes kept')
            wdseg = sdir / 'sentences' / 'ForcedAlignment' / dialog / f'{turn}.wdseg'
            words = read_wdseg(wdseg)
            if words is None:
                report.note(turn, f'no word alignment {wdseg.relative_to(src)}')
            if turn not in text:
                report.note(turn, f'no line in dialog/transcriptions/{dialog}.txt')
            utts.append(Utt(name=turn, audio=sdir / 'sentences' / 'wav' / dialog / f'{turn}.wav', speaker=spk,
                            gender='Female' if m.group(3) == 'F' else 'Male', emo_class=t['code'],
                            category=CODES[t['code']], act=act, val=val, dom=dom, source='raters',
                            extra={'Session': sess, 'Dialog': dialog,
                                   'Mode': 'improvised' if m.group(2) == 'impro' else 'scripted',
                                   'Start': t['start'], 'End': t['end']},
                            transcript=text.get(turn), words=words))
    for sdir in sessions:                  # every audio file: converted above or listed here
        for w in sorted((sdir / 'sentences' / 'wav').glob('*/*.wav')):
            sm = TURN_RE.match(w.stem)
            if w.stem in labelled or (speakers and sm and f'{sm.group(1)}{sm.group(3)}' not in speakers):
                continue
            report.skip(w.stem, f'audio file {w.relative_to(src)} without a block in dialog/EmoEvaluation/')
    folds = session_folds(utts, report)
    votes = pd.DataFrame(votes, columns=['FileName', 'Rater', 'Categories', 'Comment', 'SelfEvaluation'])
    return utts, raters, folds, votes


INFO = {'source': 'IEMOCAP (Busso et al. 2008)',
        'labels': 'listeners\' val/act/dom (1-5) mapped to 1-7 as 1 + (x - 1) * 1.5; consensus = the distributed '
                  '[V, A, D] mapped the same way',
        'per_rater': 'A-E lines of EmoEvaluation (self-evaluations F1/M1 left out unless --self-evaluations)',
        'folds': 'leave one session out (5); validate on the next session'}
README = __doc__


def convert(src, out, report=None, **kw):
    return common.convert(NAME, read, {**INFO, 'self_evaluations': bool(kw.get('self_evaluations'))}, EXTRA,
                          README, src, out, report, **kw)
