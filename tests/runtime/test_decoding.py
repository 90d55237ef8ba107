"""The decisions of text generation: token budgets against the context and the server's cap,
the settings handed to `generate`, and stop sequences cut out of streamed text."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modeldeploy_runtime import decoding
from modeldeploy_runtime.decoding import Sampling, StopScanner
from modeldeploy_runtime.protocol import BadRequest


def test_unset_max_tokens_fills_the_context_up_to_the_cap() -> None:
    assert decoding.budget(10, Sampling(), context=128, cap=512) == 118
    assert decoding.budget(10, Sampling(), context=4096, cap=512) == 512


def test_a_prompt_that_fills_the_context_is_refused_naming_the_limit() -> None:
    with pytest.raises(BadRequest, match=r"^prompt: it has 130 tokens; this model's context "
                                         r"length is 128 tokens"):
        decoding.budget(130, Sampling(), context=128, cap=512)


def test_max_tokens_past_the_context_is_refused_with_the_room_left() -> None:
    with pytest.raises(BadRequest, match=r"^max_tokens: .*120 in all.*context length is 100 "
                                         r"tokens: lower max_tokens to 80"):
        decoding.budget(20, Sampling(max_tokens=100), context=100, cap=512)


def test_max_tokens_above_the_servers_cap_names_the_spec_field() -> None:
    with pytest.raises(BadRequest, match=r"generation\.maxTokens"):
        decoding.budget(5, Sampling(max_tokens=600), context=4096, cap=512)


def test_min_tokens_above_the_budget_is_refused() -> None:
    with pytest.raises(BadRequest, match=r"^min_tokens: 50"):
        decoding.budget(5, Sampling(max_tokens=10, min_tokens=50), context=4096, cap=512)


def test_an_empty_prompt_is_refused() -> None:
    with pytest.raises(BadRequest, match=r"^prompt: it tokenizes to 0 tokens"):
        decoding.budget(0, Sampling(), context=4096, cap=512)


def test_temperature_zero_is_greedy_and_overrides_the_models_sampling() -> None:
    kwargs = decoding.generate_kwargs(Sampling(temperature=0.0, top_p=0.5), 7)
    assert kwargs == {"max_new_tokens": 7, "do_sample": False, "temperature": None,
                      "top_p": None, "top_k": None}


def test_sampling_settings_reach_generate() -> None:
    kwargs = decoding.generate_kwargs(
        Sampling(temperature=0.7, top_p=0.9, min_tokens=2, stop=("\n",)), 9)
    assert kwargs == {"max_new_tokens": 9, "min_new_tokens": 2, "do_sample": True,
                      "temperature": 0.7, "top_p": 0.9, "stop_strings": ["\n"]}


def test_unset_sampling_leaves_the_models_generation_config_in_charge() -> None:
    assert decoding.generate_kwargs(Sampling(), 3) == {"max_new_tokens": 3}


def test_finish_reason_is_length_only_when_the_budget_ran_out() -> None:
    assert decoding.finish_reason(False, 10, 10) == "length"
    assert decoding.finish_reason(False, 4, 10) == "stop"
    assert decoding.finish_reason(True, 10, 10) == "stop"


def test_a_stop_split_across_pieces_is_held_back_then_cut() -> None:
    scanner = StopScanner(("END",))
    assert scanner.feed("hello E") == "hello "
    assert scanner.feed("N") == ""
    assert scanner.feed("D and more") == ""
    assert scanner.stopped and scanner.finish() == ""


def test_held_back_text_that_is_no_stop_after_all_is_sent() -> None:
    scanner = StopScanner(("END",))
    assert scanner.feed("a E") == "a "
    assert scanner.feed("x") == "Ex"
    assert scanner.feed("EN") == ""
    assert scanner.finish() == "EN" and not scanner.stopped


def test_the_earliest_of_several_stops_wins() -> None:
    scanner = StopScanner(("b", "a"))
    assert scanner.feed("xxabc") == "xx"


@given(st.text(alphabet="abcE ND", max_size=40), st.lists(st.integers(0, 40), max_size=6))
def test_streamed_pieces_equal_the_whole_text_cut_at_the_first_stop(
    text: str, cuts: list[int],
) -> None:
    stops = ("END", "cc")
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(text[a:b]) for a, b in itertools.pairwise(points))
    out += scanner.finish()
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    assert out == (text[: min(found)] if found else text)
