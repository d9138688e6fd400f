"""Shared pytest fixtures. `tiny_corpus` is built once per session: treat it as read-only."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
DATASETS = REPO.parent / 'shared' / 'datasets'


@pytest.fixture(scope='session')
def tiny_corpus(tmp_path_factory):
    """A 24-utterance MSP-layout corpus (EmoDetail labels, rising loudness). Do not modify it."""
    from tests.fixtures import make_tiny_corpus
    return make_tiny_corpus(tmp_path_factory.mktemp('tiny') / 'corpus')
