"""Corpus builders: demo corpus (eSpeak NG), Emo-DB adapter, spliced retrieval set, retrieval metric."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import check_corpus
import corpus
import demo_corpus as mdc
import evaluate_retrieval as er
import make_spliced_set as mss
import prepare_emodb as pe
from corpus import textgrid_words

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
EMODB = DATASETS / "emodb"
EMOBANK = DATASETS / "emobank"

N_DEMO = 40


def tree_hash(root):
    h = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            h[str(p.relative_to(root))] = hashlib.md5(p.read_bytes()).hexdigest()
    return h


def ratings_per_file(root):
    det = pd.read_csv(Path(root) / "Labels" / "labels_detailed.csv")
    vals = det["EmoDetail"].str.extract(r"A:([\d.]+); V:([\d.]+); D:([\d.]+);").astype(float)
    vals.columns = ["EmoAct", "EmoVal", "EmoDom"]
    vals["FileName"] = det["FileName"]
    return vals


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return mdc.build(tmp_path_factory.mktemp("demo") / "demo_corpus", n=N_DEMO, seed=3, workers=2, progress=False)


# ---------------------------------------------------------------- demo corpus
def test_demo_layout_audio_and_splits(demo):
    for d in ("Audios", "Transcripts", "ForceAligned", "ChunkTruth"):
        assert len(list((demo / d).iterdir())) == (1 if d == "ChunkTruth" else N_DEMO), d
    lab = pd.read_csv(demo / "Labels" / "labels_consensus.csv")
    assert list(lab.columns) == ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender",
                                 "Split_Set"]
    assert len(lab) == N_DEMO and lab["FileName"].str.match(r"MSP-PODCAST_\d{4}_\d{4}\.wav").all()
    assert set(lab["Split_Set"]) == {"Train", "Development", "Test1"}
    spk = lab.groupby("Split_Set")["SpkrID"].apply(set)
    assert not (spk["Train"] & spk["Development"]) and not (spk["Train"] & spk["Test1"])
    assert not (spk["Development"] & spk["Test1"])
    assert lab["SpkrID"].nunique() >= 10 and set(lab["Gender"]) == {"Male", "Female"}
    for f in lab["FileName"]:
        info = sf.info(str(demo / "Audios" / f))
        assert info.samplerate == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert 2.0 <= info.duration <= 12.0
    for c in ("EmoAct", "EmoVal", "EmoDom"):
        assert lab[c].between(1, 7).all() and lab[c].std() > 0.5


def test_demo_raters_and_consensus(demo):
    r = ratings_per_file(demo)
    counts = r.groupby("FileName").size()
    assert counts.between(5, 8).all() and len(counts) == N_DEMO
    assert r[["EmoAct", "EmoVal", "EmoDom"]].isin(range(1, 8)).all().all()  # integers 1..7
    lab = pd.read_csv(demo / "Labels" / "labels_consensus.csv").set_index("FileName")
    mean = r.groupby("FileName")[["EmoAct", "EmoVal", "EmoDom"]].mean()
    assert np.allclose(mean.loc[lab.index].values, lab[["EmoAct", "EmoVal", "EmoDom"]].values, atol=1e-5)
    # raters differ (bias + noise), but agree with each other more than with random labels
    assert (r.groupby("FileName")["EmoAct"].std() > 0).mean() > 0.5


def test_demo_text_alignment_and_chunk_truth(demo):
    truth = json.loads((demo / "ChunkTruth" / "chunk_truth.json").read_text())
    assert len(truth) == N_DEMO
    n_vary = 0
    for fn, g in truth.items():
        stem = fn[:-4]
        words = textgrid_words(demo / "ForceAligned" / f"{stem}.TextGrid")
        text = (demo / "Transcripts" / f"{stem}.txt").read_text().split()
        assert len(words) == len(text) and all(e > s for s, e, _ in words)
        assert all(b[0] >= a[1] - 1e-6 for a, b in zip(words, words[1:]))  # ordered, no overlap
        assert words[-1][1] <= g["duration"] + 1e-6
        segs = g["segments"]
        assert 2 <= len(segs) <= 4 and all(0 <= s["start"] < s["end"] <= g["duration"] for s in segs)
        acts = [s["Act"] for s in segs]
        if g["trajectory"] == "rising":
            assert acts == sorted(acts) and acts[0] < acts[-1]
        elif g["trajectory"] == "falling":
            assert acts == sorted(acts, reverse=True) and acts[0] > acts[-1]
        elif g["trajectory"] == "flat":
            assert len(set(acts)) == 1
        n_vary += len(set(acts)) > 1
        assert len(g["times"]) == len(g["Act"]) >= 1
    assert n_vary >= N_DEMO // 2


def test_demo_same_seed_identical_files(demo, tmp_path):
    again = mdc.build(tmp_path / "again", n=N_DEMO, seed=3, workers=1, progress=False)  # other worker count
    assert tree_hash(demo) == tree_hash(again)
    other = mdc.build(tmp_path / "other", n=N_DEMO, seed=4, workers=2, progress=False)
    assert tree_hash(other) != tree_hash(demo)


def test_demo_build_is_atomic(tmp_path, monkeypatch):
    real = mdc.synth_utterance

    def flaky(job, out):
        if job["idx"] == 5:
            raise OSError("disk full (simulated)")
        return real(job, out)

    monkeypatch.setattr(mdc, "synth_utterance", flaky)
    with pytest.raises(RuntimeError, match="disk full"):
        mdc.build(tmp_path / "c", n=24, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither the corpus nor a temp folder is left
    monkeypatch.setattr(mdc, "synth_utterance", real)
    (tmp_path / "c").mkdir()
    with pytest.raises(FileExistsError):
        mdc.build(tmp_path / "c", n=24, progress=False)


def test_demo_arousal_is_audible(demo):
    """Prosody follows the within-utterance arousal: louder chunks are the more aroused ones."""
    truth = er.load_truth(demo)
    ranks = {s: er.loudness_ranks(demo, s, g["duration"]) for s, g in truth.items()}
    summary, _ = er.evaluate(truth, ranks)
    assert summary["n_pairs"] > 50 and summary["pair_acc_macro"] > 0.65
    lab = pd.read_csv(demo / "Labels" / "labels_consensus.csv")
    rate = [len((demo / "Transcripts" / f"{f[:-4]}.txt").read_text().split()) / truth[f[:-4]]["duration"]
            for f in lab["FileName"]]
    assert np.corrcoef(rate, lab["EmoAct"])[0, 1] > 0.3  # faster speech when aroused


def test_demo_reads_with_corpus_reader(demo):
    c = corpus.Corpus(demo)
    assert len(c.files("Train")) + len(c.files("Validation")) + len(c.files("Test")) == N_DEMO
    name = c.files("Test")[0]
    assert 5 <= len(c.rating_lists("Act")[name]) <= 8
    assert c.transcript(name) and len(c.words(name)) == len(c.transcript(name).split())
    rep = check_corpus.check(demo, workers=1, progress=False)
    assert not rep["fatal"] and not rep["problems"], rep["problems"]


@pytest.mark.skipif(not (EMOBANK / "corpus" / "emobank.csv").exists(), reason="shared EmoBank absent")
def test_demo_with_emobank_text(tmp_path):
    root = mdc.build(tmp_path / "eb", n=24, seed=0, text_source=EMOBANK, progress=False)
    r = ratings_per_file(root)
    assert set(np.unique(r[["EmoAct", "EmoVal", "EmoDom"]].values)) <= {1.0, 2.5, 4.0, 5.5, 7.0}  # 1-5 -> 1-7
    src = pd.read_csv(root / "Labels" / "source_text.csv")
    assert src["source"].str.startswith("emobank:").all()
    eb = pd.read_csv(EMOBANK / "corpus" / "emobank.csv").set_index("id")
    rr = pd.read_csv(EMOBANK / "corpus" / "individual_reader_ratings.csv")
    fn, sid = src.iloc[0]["FileName"], src.iloc[0]["source"].split(":", 1)[1]
    assert (root / "Transcripts" / f"{fn[:-4]}.txt").read_text().strip() == eb.loc[sid, "text"].strip()
    want = sorted(1 + 1.5 * (rr.loc[rr["id"] == sid, "V"].dropna().values - 1))
    assert sorted(r.loc[r["FileName"] == fn, "EmoVal"]) == want  # the real reader ratings
    readme = (root / "README.md").read_text()
    assert "CC-BY-SA 4.0" in readme and "Buechel" in readme


# ---------------------------------------------------------------- Emo-DB adapter
def test_pad_table_and_splits():
    assert pe.pad_labels("W") == (5.77, 2.47, 4.75)  # arousal .59, valence -.51, dominance .25
    assert pe.pad_labels("N") == (4.0, 4.0, 4.0)
    s = pe.splits()
    assert [k for k, v in s.items() if v == "Test1"] == ["03", "08"] and list(s.values()).count("Train") == 6
    s = pe.splits(loso="13")
    assert [k for k, v in s.items() if v == "Test1"] == ["13"] and [k for k, v in s.items() if v == "Development"]
    with pytest.raises(ValueError, match="unknown"):
        pe.splits(test="03,99")


def test_group_syllables():
    syl = [(0.1, 0.2, "heu"), (0.2, 0.3, "te"), (0.3, 0.4, "("), (0.4, 0.5, "abend"), (0.5, 0.6, "bmd"),
           (0.6, 0.7, "könnte"), (0.7, 0.8, "t"), (0.8, 0.9, "ich")]
    got = pe.group_syllables(syl, ["Heute", "abend", "könnte", "ich"])
    assert [(round(s, 2), round(e, 2), w) for s, e, w in got] == [
        (0.1, 0.3, "Heute"), (0.4, 0.6, "abend"), (0.6, 0.8, "könnte"), (0.8, 0.9, "ich")]
    assert pe.group_syllables(syl[:2], ["a", "b", "c"]) is None  # fewer syllables than words


@pytest.fixture(scope="module")
def emodb(tmp_path_factory):
    if not (EMODB / "wav").is_dir():
        pytest.skip("shared Emo-DB absent")
    out, problems = pe.prepare(EMODB, tmp_path_factory.mktemp("emodb") / "emodb", speakers="03,08,09,11",
                               progress=False)
    return out


@pytest.mark.skipif(not (EMODB / "wav").is_dir(), reason="shared Emo-DB absent")
def test_emodb_full_count_cheap():
    items, bad = pe.scan(EMODB)
    assert len(items) == 535 and not bad and {i[1] for i in items} == set(pe.SPEAKERS)
    rec = pe.read_recognition(EMODB / "erkennung.txt")
    assert all(i[0] in rec for i in items) and all(0 <= r <= 100 for r, _ in rec.values())


def test_emodb_prepared(emodb):
    lab = pd.read_csv(emodb / "Labels" / "labels_consensus.csv")
    info = pd.read_csv(emodb / "Labels" / "emodb_info.csv", dtype={"Speaker": str})
    assert set(info["Speaker"]) == {"03", "08", "09", "11"} and len(lab) == len(info) > 150
    for f in lab["FileName"][::7]:
        i = sf.info(str(emodb / "Audios" / f))
        assert i.samplerate == 16000 and i.channels == 1
    for row in lab.itertuples():
        assert (row.EmoAct, row.EmoVal, row.EmoDom) == pe.pad_labels(row.FileName[5])
        assert row.EmoClass == pe.EMOTIONS[row.FileName[5]][2]
    sp = lab.groupby("Split_Set")["SpkrID"].apply(set).to_dict()
    assert sp == {"Test1": {3, 8}, "Development": {9}, "Train": {11}}
    r = ratings_per_file(emodb)
    assert (r.groupby("FileName").size() == 10).all()
    # agreement follows the listener recognition rate: well recognised -> tighter ratings
    spread = r.groupby("FileName")[["EmoAct", "EmoVal", "EmoDom"]].std().mean(1)
    rec = info.set_index("FileName")["Recognition"].loc[spread.index]
    assert spread[rec >= 100].mean() + 0.15 < spread[rec <= 85].mean()
    # word alignment from the syllable files: words inside the audio, transcript = audible words
    name = "03a01Fa"
    words = textgrid_words(emodb / "ForceAligned" / f"{name}.TextGrid")
    assert [w for *_, w in words] == ["Der", "Lappen", "liegt", "auf", "dem", "Eisschrank"]
    assert abs(words[0][0] - 0.0801) < 1e-3 and abs(words[-1][1] - 1.8414) < 1e-3
    for f in lab["FileName"][::5]:
        stem = f[:-4]
        ws = textgrid_words(emodb / "ForceAligned" / f"{stem}.TextGrid")
        assert len(ws) == len((emodb / "Transcripts" / f"{stem}.txt").read_text().split()) >= 1
    assert len(corpus.Corpus(emodb).files("Test")) == (lab["Split_Set"] == "Test1").sum()


def test_spliced_set_and_retrieval(emodb, tmp_path):
    out, n = mss.make(emodb, tmp_path / "spliced", max_per_pair=3, progress=False)
    lab = pd.read_csv(out / "Labels" / "labels_consensus.csv")
    truth = json.loads((out / "ChunkTruth" / "chunk_truth.json").read_text())
    src = pd.read_csv(emodb / "Labels" / "labels_consensus.csv").set_index("FileName")
    assert len(lab) == n == len(truth) and n >= 12 and set(lab["Split_Set"]) >= {"Test1", "Train"}
    for row in lab.itertuples():
        g = truth[row.FileName]
        a, b = g["segments"]
        assert {a["emotion"], b["emotion"]} in ({"anger", "sadness"}, {"boredom", "happiness"})
        assert a["file"][:2] == b["file"][:2] == row.FileName[:2]  # same speaker
        d1, d2 = a["end"] - a["start"], b["end"] - b["start"]
        assert abs(b["start"] - a["end"] - 0.3) < 1e-3 and abs(g["split_point"] - a["end"]) < 1e-6
        assert abs(sf.info(str(out / "Audios" / row.FileName)).duration - g["duration"]) < 1e-3
        want = (d1 * src.loc[a["file"], "EmoAct"] + d2 * src.loc[b["file"], "EmoAct"]) / (d1 + d2)
        assert abs(row.EmoAct - want) < 1e-4
    orders = {(g["segments"][0]["emotion"], g["segments"][1]["emotion"]) for g in truth.values()}
    assert ("anger", "sadness") in orders and ("sadness", "anger") in orders
    # the evaluator: true order 1.0, reversed 0.0, random ~0.5 on the spliced truth
    stems = er.load_truth(out)
    perfect, reverse = {}, {}
    for s, g in stems.items():
        t, part = er.chunk_truth(g["segments"], g["duration"])
        perfect[s] = pd.Series(np.nan_to_num(t, nan=np.nanmean(t))).rank(ascending=False, method="min").values
        reverse[s] = 23 - perfect[s]
    assert er.evaluate(stems, perfect)[0]["pair_acc_macro"] == 1.0
    assert er.evaluate(stems, reverse)[0]["pair_acc_macro"] == 0.0
    res = subprocess.run([sys.executable, str(REPO / "evaluate_retrieval.py"), "--corpus", str(out), "--split",
                          "Test", "--baseline", "random", "loudness", "--out", str(tmp_path / "r.json")],
                         capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    r = json.loads((tmp_path / "r.json").read_text())["results"]
    assert 0.3 < r["random"]["pair_acc_macro"] < 0.7 and r["loudness"]["n_pairs"] > 0


# ---------------------------------------------------------------- retrieval metric
def test_retrieval_scores_true_random_reversed():
    truth = np.r_[np.full(7, 5.8), np.full(8, np.nan), np.full(7, 2.1)]  # spliced: high part, pause, low part
    part = np.r_[np.zeros(7), -np.ones(8), np.ones(7)]
    true_ranks = np.r_[np.arange(1, 8), np.arange(8, 16), np.arange(16, 23)]
    assert er.retrieval_scores(true_ranks, truth, part)["pair_acc"] == 1.0
    assert er.retrieval_scores(23 - true_ranks, truth, part)["pair_acc"] == 0.0
    assert er.retrieval_scores(np.ones(22), truth, part)["pair_acc"] == 0.5  # all tied
    rng = np.random.default_rng(0)
    acc = [er.retrieval_scores(rng.permutation(22) + 1, truth, part)["pair_acc"] for _ in range(300)]
    assert abs(np.mean(acc) - 0.5) < 0.03
    # trajectory without explicit parts (every distinct value its own segment) + Kendall tau
    ramp = np.repeat([2.0, 3.0, 4.0, 5.0], [6, 5, 6, 5])
    s = er.retrieval_scores(pd.Series(-ramp).rank(method="min").values, ramp)
    assert s["pair_acc"] == 1.0 and s["tau"] == pytest.approx(1.0)
    assert er.retrieval_scores(pd.Series(ramp).rank(method="min").values, ramp)["tau"] == pytest.approx(-1.0)


def test_chunk_geometry():
    b = er.chunk_bounds(4.3, hop=0.016, K=22)
    assert b.shape == (22, 2) and b[0, 0] == 0 and np.allclose(b[:, 1] - b[:, 0], 62 * 0.016)
    assert b[-1, 1] <= 4.3 and np.all(np.diff(b[:, 0]) > 0)
    assert np.all(er.chunk_bounds(0.6)[:, 0] == 0)  # shorter than a chunk: padded, all start at 0
    segs = [dict(start=0.0, end=2.0, Act=5.8), dict(start=2.3, end=4.3, Act=2.1)]
    t, part = er.chunk_truth(segs, 4.3)
    assert set(part) == {-1, 0, 1} and np.all(t[part == 0] == 5.8) and np.all(t[part == 1] == 2.1)
    mid = part == -1
    assert np.all((t[mid] >= 2.1) & (t[mid] <= 5.8)) and np.any((t[mid] > 2.2) & (t[mid] < 5.7))


def test_sentence_bank():
    from demo_text import SENTENCES
    assert len(SENTENCES) >= 300 and len({t for t, _ in SENTENCES}) == len(SENTENCES)
    v = np.array([v for _, v in SENTENCES])
    assert ((v >= 1) & (v <= 7)).all()
    assert min((v < 3.5).sum(), ((v >= 3.5) & (v <= 4.5)).sum(), (v > 4.5).sum()) >= 90


@pytest.mark.parametrize('build', [pe.prepare, mss.make])
def test_builders_never_replace_their_source(tmp_path, build):
    """--force replaces the output folder: it may not be the source, hold it or lie inside it."""
    src = tmp_path / 'parent' / 'src'
    src.mkdir(parents=True)
    (src / 'keep.txt').write_text('source data')
    from outputs import OutputClashError
    for out in (src, tmp_path / 'parent', src / 'inside'):
        with pytest.raises(OutputClashError, match='out .* the (Emo-DB )?source'):
            build(src, out, force=True, progress=False)
        assert (src / 'keep.txt').read_text() == 'source data'
