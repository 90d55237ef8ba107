"""The termination-message words: the runtime writes them, the operator reads them."""

from __future__ import annotations

import pytest
from modeldeploy_contract.reasons import (
    STAGE_DEADLINE_REASONS,
    Reason,
    format_message,
    split_message,
)
from modeldeploy_operator.api.status import Reason as ConditionReason
from modeldeploy_operator.planning import observe
from modeldeploy_runtime import errors
from modeldeploy_runtime.deadlines import exceeded_message


def runtime_words() -> set[str]:
    """Every word the runtime can write: its error classes and its stage deadlines."""
    classes = [errors.RuntimeFailure]
    words = set()
    while classes:
        cls = classes.pop()
        words.add(cls.reason)
        classes.extend(cls.__subclasses__())
    words |= {split_message(exceeded_message(stage, 1))[0] for stage in STAGE_DEADLINE_REASONS}
    words.add(Reason.LISTEN_FAILED)
    return {str(w) for w in words}


def test_the_operator_reads_exactly_the_words_the_runtime_writes() -> None:
    assert set(observe.RUNTIME_REASONS) == set(Reason)
    assert runtime_words() == {str(r) for r in Reason}


def test_every_failure_word_the_operator_knows_is_a_condition_reason() -> None:
    for reason, kind in observe.RUNTIME_REASONS.items():
        if kind is not None:
            assert ConditionReason(kind.value).value == reason.value


@pytest.mark.parametrize("reason", list(Reason))
def test_a_message_splits_back_into_its_word_and_text(reason: Reason) -> None:
    assert split_message(format_message(reason, "what: why; fix")) == (
        reason, "what: why; fix", True)


def test_unknown_and_missing_words_keep_the_whole_message() -> None:
    assert split_message("NewWord: text") == (None, "NewWord: text", True)
    assert split_message("plain text") == (None, "plain text", False)


def test_a_word_must_be_one_camel_case_word() -> None:
    with pytest.raises(ValueError, match="CamelCase"):
        format_message("not a word", "text")
