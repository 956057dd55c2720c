import pytest
import torch

from harness.errors import ConfigError
from harness.train.decoding import choose, encode_prefix, generate_text, generate_tokens
from harness.data.text import Vocab

LOGITS = torch.tensor([0.1, 2.0, 1.5, -1.0, 1.9])


def test_zero_temperature_is_greedy() -> None:
    assert choose(LOGITS) == 1 and choose(LOGITS, temperature=0.0, top_k=3) == 1


def test_top_1_is_greedy_at_any_temperature() -> None:
    assert {choose(LOGITS, temperature=5.0, top_k=1,
                   generator=torch.Generator().manual_seed(s)) for s in range(20)} == {1}


def test_top_k_draws_only_among_the_k_likeliest() -> None:
    generator = torch.Generator().manual_seed(0)
    drawn = {choose(LOGITS, temperature=10.0, top_k=3, generator=generator) for _ in range(300)}
    assert drawn == {1, 4, 2}


def test_draws_repeat_with_the_same_seed() -> None:
    def draws(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return [choose(LOGITS, temperature=1.0, top_k=None, generator=generator)
                for _ in range(30)]

    assert draws(5) == draws(5) and len(set(draws(5))) > 1


class Counter(torch.nn.Module):
    """Predicts token (last input + 1) mod V: a model whose greedy output is known."""

    def begin_state(self, batch_size, device):
        return None

    def forward(self, X, state):
        return torch.nn.functional.one_hot((X.T.reshape(-1) + 1) % 5, 5).float() * 10, state


def test_generate_tokens_warms_up_on_the_prefix_then_continues() -> None:
    assert generate_tokens(Counter(), [3, 0, 2], num_preds=4,
                           device=torch.device("cpu")) == [3, 0, 2, 3, 4, 0, 1]
    with pytest.raises(ConfigError, match="prefix is empty"):
        generate_tokens(Counter(), [], num_preds=4, device=torch.device("cpu"))


def test_generate_text_tokenises_the_prefix_and_decodes_the_continuation() -> None:
    vocab = Vocab("abcd")  # ids: <unk> 0, a 1, b 2, c 3, d 4
    assert generate_text(Counter(), "ab", num_preds=3, vocab=vocab, tokenizer="char",
                         separator="", device=torch.device("cpu")) == "abcd<unk>"


def test_a_tiny_temperature_draws_the_likeliest_without_nan() -> None:
    generator = torch.Generator().manual_seed(0)
    assert {choose(LOGITS, temperature=1e-300, top_k=None, generator=generator)
            for _ in range(20)} == {1}
    tied = torch.tensor([3.0, -1.0, 3.0])  # the limit of softmax(l / T): uniform over ties
    assert {choose(tied, temperature=1e-300, top_k=2, generator=generator)
            for _ in range(50)} == {0, 2}


def test_a_typed_prefix_is_preprocessed_as_the_corpus() -> None:
    vocab = Vocab(list("the timravl"))
    assert vocab.decode(encode_prefix("Time Traveller!! ", vocab, "char")) == "time traveller "
    assert vocab.decode(encode_prefix("  42 The", vocab, "char")) == " the"
    words = Vocab(["the", "time", "traveller"])
    assert encode_prefix("The TIME-traveller", words, "word") == words.encode(
        ["the", "time", "traveller"])


@pytest.mark.parametrize("prefix,tokenizer,message", [
    ("The quiz", "char", "characters the run's vocabulary lacks: 'q', 'u', 'z'"),
    ("the machine", "word", "words the run's vocabulary lacks: 'machine'"),
])
def test_tokens_the_vocabulary_lacks_are_refused_by_name(prefix: str, tokenizer: str,
                                                         message: str) -> None:
    vocab = Vocab(list("the timravl") if tokenizer == "char" else ["the", "time"])
    with pytest.raises(ConfigError, match=message):
        encode_prefix(prefix, vocab, tokenizer)
