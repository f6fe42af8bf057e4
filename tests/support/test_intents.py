"""The intent router on a slice of BANKING77: training, calibrated confidence, save/load, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from aigc_studio.errors import AigcError
from aigc_studio.support.intents import (
    IntentRouter,
    IntentTrainConfig,
    _Neighbours,
    _softmax,
    choose_neighbour_weight,
    expected_calibration_error,
    fit_temperature,
    load_labelled,
    sample_per_label,
    split_holdout,
    train_intent_router,
)

INTENTS = ("card_arrival", "change_pin", "exchange_rate", "lost_or_stolen_card", "top_up_failed")
PER_INTENT = 40


@pytest.fixture(scope="module")
def banking_slice(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 messages of each of 5 BANKING77 intents, as a CSV with BANKING77's columns (text, category)."""
    rows: dict[str, list[str]] = {intent: [] for intent in INTENTS}
    with open(shared_data / "banking77" / "train.csv", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["category"] in rows and len(rows[row["category"]]) < PER_INTENT:
                rows[row["category"]].append(row["text"])
    path = tmp_path_factory.mktemp("banking") / "slice.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows((text, intent) for intent in INTENTS for text in rows[intent])
    return path


@pytest.fixture(scope="module")
def trained(banking_slice: Path) -> tuple[IntentRouter, object]:
    texts, labels = load_labelled(banking_slice, text_col="text", label_col="category")
    return train_intent_router(texts, labels, IntentTrainConfig(), holdout=0.25, seed=0)


def test_router_learns_the_slice_and_reports_holdout_metrics(trained) -> None:  # noqa: ANN001
    router, report = trained
    assert router.labels == sorted(INTENTS)
    assert report.train_size == 150 and report.holdout_size == 50
    assert report.accuracy >= 0.85 and report.macro_f1 >= 0.85
    assert 0 < report.temperature < 1e3 and 0 <= report.ece <= 1
    [prediction] = router.predict(["I still haven't received my new card, it's been two weeks"])
    assert prediction.intent == "card_arrival" and 0.2 < prediction.confidence <= 1.0
    assert len(prediction.alternatives) == 2 and prediction.alternatives[0][1] <= prediction.confidence


def test_probabilities_sum_to_one_and_confidence_tracks_accuracy(trained) -> None:  # noqa: ANN001
    router, _ = trained
    probs = router.predict_proba(["where is my card", "what is the exchange rate for euros", "hello there"])
    assert probs.shape == (3, 5) and np.allclose(probs.sum(axis=1), 1.0)
    # an on-topic message gets a more confident answer than small talk
    assert probs[0].max() > probs[2].max()


def test_save_and_load_give_the_same_predictions(trained, tmp_path: Path) -> None:  # noqa: ANN001
    router, _ = trained
    router.save(tmp_path / "router")
    assert sorted(p.name for p in (tmp_path / "router").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert json.loads((tmp_path / "router" / "config.json").read_text())["labels"] == sorted(INTENTS)
    loaded = IntentRouter.load(tmp_path / "router")
    messages = ["I lost my card on the train", "my top up did not work", "change my pin please"]
    assert np.allclose(loaded.predict_proba(messages), router.predict_proba(messages), atol=1e-5)


def test_the_router_keeps_its_neighbour_vote_through_save_and_load(trained, tmp_path: Path) -> None:  # noqa: ANN001
    router, report = trained
    assert router.neighbours is not None and len(router.neighbours.labels) == report.train_size
    assert report.neighbour_weight == router.neighbour_weight
    router.save(tmp_path / "router")
    loaded = IntentRouter.load(tmp_path / "router")
    assert loaded.neighbour_weight == router.neighbour_weight
    assert np.array_equal(loaded.neighbours.vectors, router.neighbours.vectors)
    # the vote changes the probabilities whenever it has weight (small talk: the layer is unsure)
    messages = ["hello there", "what a lovely day"]
    loaded.neighbour_weight = 0.5
    alone = _softmax(loaded.scores(messages) / loaded.temperature)
    assert not np.allclose(loaded.predict_proba(messages), alone, atol=1e-4)


def test_the_nearest_neighbours_vote_for_their_intents() -> None:
    vectors = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0], [0.6, 0.8]])
    neighbours = _Neighbours.build(vectors, np.array([0, 0, 1, 1]), k=2, temperature=0.05)
    probs = neighbours.probs(np.array([[2.0, 0.1], [0.1, 3.0]]), n_labels=3)  # lengths do not matter
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0, 0] == 1.0  # both nearest are intent 0
    assert probs[1, 1] == 1.0 and probs[1, 2] == 0.0
    neighbours.k = 3  # a third, farther neighbour of the other intent gets a small share
    assert 0.0 < neighbours.probs(np.array([[1.0, 0.0]]), n_labels=3)[0, 1] < 0.05


def test_the_vote_weight_is_chosen_by_what_predicts_the_calibration_labels() -> None:
    y = np.array([0, 1, 0, 1])
    unsure = np.full((4, 2), 0.5)
    right = np.eye(2)[y]
    assert choose_neighbour_weight(unsure, right, y) == 0.9  # a vote that is always right takes the most weight
    assert choose_neighbour_weight(right, np.eye(2)[1 - y], y) == 0.0  # a vote that is always wrong takes none


def test_without_neighbours_the_router_stores_no_embeddings(banking_slice: Path, tmp_path: Path) -> None:
    texts, labels = load_labelled(banking_slice)
    router, report = train_intent_router(texts, labels, IntentTrainConfig(neighbours=0), holdout=0.25)
    assert router.neighbours is None and report.neighbour_weight == 0.0
    router.save(tmp_path / "router")
    from safetensors.numpy import load_file

    assert "neighbour_vectors" not in load_file(str(tmp_path / "router" / "model.safetensors"))
    # too few calibration messages per intent to choose the vote's weight: no vote either
    few = [i for i, label in enumerate(labels) if sum(1 for other in labels[:i] if other == label) < 6]
    small, _ = train_intent_router([texts[i] for i in few], [labels[i] for i in few], IntentTrainConfig())
    assert small.neighbours is None and small.neighbour_weight == 0.0


def test_tfidf_only_router_needs_no_embedder(banking_slice: Path) -> None:
    texts, labels = load_labelled(banking_slice)
    router, report = train_intent_router(texts, labels, IntentTrainConfig(embedder="none", classifier="logreg"), holdout=0.25)
    assert router.features.embedders == [] and report.accuracy >= 0.7


def test_temperature_scaling_fixes_overconfidence() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=400)
    scores = rng.normal(size=(400, 3))
    scores[np.arange(400), y] += 1.0  # right about half the time...
    scores *= 10  # ...but with near-certain softmax probabilities
    t = fit_temperature(scores, y)
    assert t > 3

    def ece(temperature: float) -> float:
        z = scores / temperature
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        return expected_calibration_error(p.max(1), p.argmax(1) == y)

    assert ece(t) < ece(1.0) / 2


def test_splits_are_stratified_and_seeded() -> None:
    labels = ["a"] * 10 + ["b"] * 5 + ["c"] * 1
    train, held = split_holdout(labels, 0.2, seed=3)
    assert sorted(np.concatenate([train, held])) == list(range(16))
    assert [labels[i] for i in held].count("a") == 2 and [labels[i] for i in held].count("b") == 1
    assert "c" in [labels[i] for i in train]  # a one-message intent stays in training
    assert (split_holdout(labels, 0.2, seed=3)[1] == held).all()
    assert len(sample_per_label(labels, 3, seed=0)) == 7


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        ("", {}, "holds no rows"),
        ("message,category\nhi,a\nyo,b\n", {}, "column 'text' not found.*columns are: message, category"),
        ("text,label\nhi,a\n", {}, "column 'category' not found"),
        ("text,category\nhi,a\nho,a\n", {}, "only one intent"),
        ("text,category\nhi,a\n,b\n", {}, ":3: empty text"),
    ],
)
def test_bad_training_data(tmp_path: Path, content: str, kwargs: dict, message: str) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AigcError, match=message):
        load_labelled(path, **kwargs)


def test_loading_something_that_is_not_a_router(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match="is not an intent model"):
        IntentRouter.load(tmp_path)


def test_recipe_file_is_read_and_checked(tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parents[2] / "recipes" / "banking-intents.toml"
    config = IntentTrainConfig.from_toml(recipe, finetune_epochs=0)
    assert config.finetune_epochs == 0 and config.embedder == "minilm" and config.classifier == "svm"
    bad = tmp_path / "bad.toml"
    bad.write_text('embedder = "minilm"\nlearning_rate = 3\n', encoding="utf-8")
    with pytest.raises(AigcError, match="unknown key 'learning_rate'"):
        IntentTrainConfig.from_toml(bad)
    with pytest.raises(AigcError, match="classifier must be"):
        IntentTrainConfig(classifier="forest")  # type: ignore[arg-type]


@pytest.mark.parametrize(("field", "value", "message"), [
    ("calibration_fraction", 0.6, "calibration_fraction must be in"), ("c", 0, "must be positive"),
    ("embed_weight", -1, "must be positive"), ("finetune_epochs", -1, "finetune_epochs must be >= 0"),
    ("neighbours", -1, "neighbours must be >= 0"), ("neighbour_temperature", 0, "neighbour_temperature > 0"),
])
def test_nonsense_training_settings_are_refused(field, value, message):
    with pytest.raises(AigcError, match=message):
        IntentTrainConfig(**{field: value})


@pytest.mark.parametrize("layers", [0, 1])
def test_a_fine_tuned_encoder_is_saved_with_the_router_and_loads_back(banking_slice: Path, tmp_path: Path,
                                                                      layers: int) -> None:
    texts, labels = load_labelled(banking_slice, text_col="text", label_col="category")
    config = IntentTrainConfig(finetune_epochs=1, finetune_batch_size=50, finetune_layers=layers)  # 3 steps
    router, report = train_intent_router(texts, labels, config, holdout=0.25, seed=0, out_dir=tmp_path / "router")
    router.save(tmp_path / "router")
    encoder = tmp_path / "router" / "encoder"
    size_mb = sum(path.stat().st_size for path in encoder.iterdir()) / 2**20
    if layers:  # only the top layer travels with the router: ~7 MB of MiniLM's ~87
        assert (encoder / "tuned_base.json").is_file() and size_mb < 10
    else:
        assert (encoder / "config.json").is_file() and size_mb > 50
    assert report.accuracy >= 0.8
    loaded = IntentRouter.load(tmp_path / "router")
    message = ["I still haven't received my new card, it's been two weeks"]
    assert loaded.predict(message)[0].intent == router.predict(message)[0].intent == "card_arrival"
    assert loaded.predict(message)[0].confidence == pytest.approx(router.predict(message)[0].confidence, abs=1e-5)


def test_fine_tuning_more_layers_than_the_encoder_has_is_refused(banking_slice: Path, tmp_path: Path) -> None:
    texts, labels = load_labelled(banking_slice, text_col="text", label_col="category")
    with pytest.raises(AigcError, match="finetune_layers=7 but the encoder has 6 layers"):
        train_intent_router(texts, labels, IntentTrainConfig(finetune_epochs=1, finetune_layers=7), out_dir=tmp_path)
