"""protocol.entropy: the helpers turn an entropy source into the same values on every run."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from protocol.entropy import choice_string


@given(
    seed=st.integers(min_value=0, max_value=2**64),
    alphabet=st.text(min_size=1, max_size=70),
    length=st.integers(min_value=0, max_value=40),
)
def test_choice_string_draws_what_choice_draws(seed: int, alphabet: str, length: int) -> None:
    # the fast path for random.Random is the same draws as choice() one character at a time,
    # and leaves the generator in the same state
    fast, slow = random.Random(seed), random.Random(seed)
    assert choice_string(fast, alphabet, length) == "".join(slow.choice(alphabet) for _ in range(length))
    assert fast.getstate() == slow.getstate()


class Counting(random.Random):
    """A subclass: choice_string must go through its own choice()."""

    calls = 0

    def choice(self, seq):  # type: ignore[no-untyped-def, override]
        Counting.calls += 1
        return super().choice(seq)


def test_choice_string_uses_a_subclass_s_own_choice() -> None:
    assert len(choice_string(Counting(1), "abc", 5)) == 5 and Counting.calls == 5
