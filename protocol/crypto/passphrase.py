"""The generated E2E password: 12 words drawn uniformly from the BIP-39 English list.

Theory of operation: Rocket.Chat (client/lib/e2ee/passphrase.ts ``generatePassphrase``) draws each of
12 words independently and uniformly from the 2,048-word BIP-39 English list (rejection sampling
over 32-bit values) and joins them with single spaces: 12 * 11 = 132 bits.  keysim draws from the
injected entropy instead; ``random.Random.choice`` is already uniform (it uses ``randbelow``).  The
words are plain ASCII, so the passphrase is always a valid Latin-1 password.

The list comes from the ``mnemonic`` package (the BIP-39 reference implementation's word files),
read once on first use.
"""

from __future__ import annotations

import functools
from typing import Final

from mnemonic import Mnemonic

from protocol.crypto import codec
from protocol.entropy import Entropy
from protocol.errors import ValidationError

__all__ = ["PASSPHRASE_WORDS", "generate_passphrase", "wordlist"]

#: passphrase.ts WORD_COUNT
PASSPHRASE_WORDS: Final = 12


@functools.cache
def wordlist() -> tuple[str, ...]:
    """The 2,048 BIP-39 English words, in list order."""
    words = tuple(Mnemonic("english").wordlist)
    assert len(words) == 2048, "BIP-39 lists have 2,048 words"
    return words


def generate_passphrase(entropy: Entropy, words: int = PASSPHRASE_WORDS) -> str:
    """``words`` independent uniform BIP-39 English words joined by single spaces."""
    entropy = codec.require_entropy(entropy)
    if isinstance(words, bool) or not isinstance(words, int) or words < 1:
        raise ValidationError(message=f"words must be a positive int, not {words!r}")
    choices = wordlist()
    return " ".join(entropy.choice(choices) for _ in range(words))
