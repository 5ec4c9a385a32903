"""MinHash signatures over word shingles, and LSH banding to find near-duplicate candidates.

Signatures are deterministic across processes and machines (fixed seed, permutations drawn
with ``random.Random``, shingles hashed with CRC-32 rather than Python's salted ``hash``),
because they are persisted and compared with signatures computed by other invocations.

A signature is ``bytes``: ``num_perm`` little-endian uint32 values, stored as is in
DynamoDB. numpy computes them in batches when it is installed (the Ingest function has it
from the AWS SDK for pandas layer); elsewhere, e.g. a slim install or a connector's own
process, a pure-Python path computes the very same values.
"""

from __future__ import annotations

import hashlib
import random
import re
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import eq
from types import ModuleType

np: ModuleType | None
try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised by forcing use_numpy=False in tests
    np = None

# Largest prime below 2**32: (a * x + b) stays below 2**64 for 32-bit x, so numpy's uint64
# arithmetic never wraps.
_PRIME = 4_294_967_291
_MAX = 2**32 - 1
_CHUNK_TEXTS = 512
_WORD = re.compile(r"\w+", re.UNICODE)

Signature = bytes


def _pack(values: Iterable[int]) -> bytes:
    packed = array("I", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def unpack(signature: Signature) -> array[int]:
    values = array("I", signature)
    if sys.byteorder == "big":
        values.byteswap()
    return values


@dataclass(frozen=True)
class MinHasher:
    num_perm: int = 128
    shingle_size: int = 5
    seed: int = 1
    # Signatures of texts whose digit-bearing words differ share no values (numbers_key).
    distinct_numbers: bool = False
    _a: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _b: tuple[int, ...] = field(init=False, repr=False, compare=False)
    _lanes: _Lanes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if array("I").itemsize != 4:  # pragma: no cover - every mainstream platform
            raise RuntimeError("MinHash signatures need a 4-byte unsigned int array type")
        rng = random.Random(self.seed)
        a = tuple(rng.randrange(1, _PRIME) for _ in range(self.num_perm))
        b = tuple(rng.randrange(0, _PRIME) for _ in range(self.num_perm))
        object.__setattr__(self, "_a", a)
        object.__setattr__(self, "_b", b)
        object.__setattr__(self, "_lanes", _Lanes.of(a, b))

    def shingle_hashes(self, text: str) -> list[int]:
        """32-bit hashes of the word ``shingle_size``-grams (the whole text if shorter)."""
        words = _WORD.findall(text.lower())
        size = min(self.shingle_size, len(words))
        if size == 0:
            return []
        shingles = {" ".join(words[i : i + size]) for i in range(len(words) - size + 1)}
        return [zlib.crc32(s.encode()) for s in shingles]

    def signature(self, text: str) -> Signature:
        return self.signatures([text])[0]

    def signatures(self, texts: Sequence[str], *, use_numpy: bool | None = None) -> list[Signature]:
        """One signature per text; a text without words gets all-max (matches nothing real)."""
        if use_numpy is None:
            use_numpy = np is not None
        if not use_numpy:
            signatures = [self._python(self.shingle_hashes(text)) for text in texts]
        else:
            # Shingled a chunk at a time: a drop's shingle hashes as Python ints would take
            # ~40 bytes each, hundreds of MB for a large drop, held only to be flattened.
            signatures = []
            for start in range(0, len(texts), _CHUNK_TEXTS):
                chunk = texts[start : start + _CHUNK_TEXTS]
                signatures.extend(self._numpy([self.shingle_hashes(text) for text in chunk]))
        if self.distinct_numbers:
            signatures = [
                _xor_all(signature, numbers_key(text))
                for signature, text in zip(signatures, texts, strict=True)
            ]
        return signatures

    def _python(self, hashes: list[int]) -> Signature:
        """``min((a * x + b) % _PRIME for x in hashes)`` for every (a, b), all at once."""
        if not hashes:
            return _pack([_MAX] * self.num_perm)
        return self._lanes.signature(hashes)

    def _numpy(self, hashed: list[list[int]]) -> list[Signature]:
        assert np is not None
        a = np.array(self._a, dtype=np.uint64)
        b = np.array(self._b, dtype=np.uint64)
        prime = np.uint64(_PRIME)
        out = np.full((len(hashed), self.num_perm), _MAX, dtype="<u4")
        lengths = np.array([len(h) for h in hashed], dtype=np.int64)
        present = np.flatnonzero(lengths)
        # Chunks keep the (num_perm x shingles) matrix in cache: ~10x faster than one pass.
        for chunk in np.array_split(present, max(1, present.size // _CHUNK_TEXTS)):
            if chunk.size == 0:
                continue
            flat = np.fromiter(
                chain.from_iterable(hashed[i] for i in chunk),
                dtype=np.uint64,
                count=int(lengths[chunk].sum()),
            )
            starts = np.concatenate(([0], np.cumsum(lengths[chunk])[:-1]))
            # (num_perm, shingles of the chunk): permuted hashes, then the minimum per text.
            # In place: one (num_perm x shingles) uint64 buffer rather than three.
            permuted = np.outer(a, flat)
            permuted += b[:, None]
            np.remainder(permuted, prime, out=permuted)
            out[chunk] = np.minimum.reduceat(permuted, starts, axis=1).T
        return [row.tobytes() for row in out]


@dataclass(frozen=True)
class _Lanes:
    """Every permutation at once, in one Python integer: no numpy, ~4x fewer interpreter steps.

    Permutation i lives in bits [72 i, 72 i + 72) ("lane" i). One multiplication and one
    addition of the packed integers give every lane's ``a * x + b`` (< 2**65: no carry into
    the next lane); masks and shifts then take each lane modulo the prime and keep the
    running minimum, lane by lane, without ever letting one lane borrow from another:

    - modulo: ``_PRIME = 2**32 - 5``, so ``h * 2**32 + l ≡ 5 h + l``; twice, then one
      conditional subtraction (``v >= _PRIME`` exactly when ``v + 5`` reaches bit 32);
    - minimum: bit 32 of ``2**32 + low - v`` says ``low >= v``; that bit, spread over the
      lane's 32 bits, selects ``v``.

    The lanes' low 4 bytes, read little-endian, are the signature as ``_pack`` writes it.
    """

    count: int
    a: int
    b: int
    ones: int  # 1 in every lane

    WIDTH = 72  # bits per lane, a whole number of bytes

    @classmethod
    def of(cls, a: Sequence[int], b: Sequence[int]) -> _Lanes:
        def packed(values: Iterable[int]) -> int:
            return sum(value << (cls.WIDTH * lane) for lane, value in enumerate(values))

        return cls(len(a), packed(a), packed(b), packed([1] * len(a)))

    def signature(self, hashes: Iterable[int]) -> Signature:
        ones = self.ones
        low32, low33, low4 = ones * _MAX, ones * (2 * _MAX + 1), ones * 15
        five, bit32 = ones * 5, ones << 32
        lowest: int | None = None
        for x in hashes:
            value = self.a * x + self.b
            value = ((value >> 32) & low33) * 5 + (value & low32)  # < 2**36
            value = ((value >> 32) & low4) * 5 + (value & low32)  # < 2**32 + 80
            value -= (((value + five) >> 32) & ones) * _PRIME  # < _PRIME
            if lowest is None:
                lowest = value
                continue
            take = (((lowest + bit32) - value) >> 32) & ones  # 1 where lowest >= value
            lowest ^= (lowest ^ value) & (take * _MAX)
        assert lowest is not None
        step = self.WIDTH // 8
        packed = lowest.to_bytes(self.count * step, "little")
        return b"".join([packed[start : start + 4] for start in range(0, len(packed), step)])


def numbers_key(text: str) -> int:
    """A 32-bit digest of the text's digit-bearing words (numbers, ids, dates) in order; 0
    when it has none, so a text without numbers keeps its plain signature.

    Every value of a signature is XORed with it: two texts with the same numbers keep
    every equal value equal, two with different numbers share (almost) none, so LSH never
    nominates them and their estimated similarity is ~0. Word shingles alone cannot tell
    "order 1234 shipped" from "order 1235 shipped": one word apart either way.
    """
    numbers = [word for word in _WORD.findall(text.lower()) if any(c.isdigit() for c in word)]
    if not numbers:
        return 0
    return zlib.crc32("\x1f".join(numbers).encode()) or 1


def _xor_all(signature: Signature, key: int) -> Signature:
    if not key:
        return signature
    # The same 4 bytes in every lane: byte order does not matter for an XOR of equal lanes.
    pattern = key.to_bytes(4, "little") * (len(signature) // 4)
    mixed = int.from_bytes(signature, "little") ^ int.from_bytes(pattern, "little")
    return mixed.to_bytes(len(signature), "little")


def jaccard_estimate(first: Signature, second: Signature) -> float:
    """The share of equal MinHash values: an unbiased estimate of the Jaccard similarity."""
    if len(first) != len(second):
        raise ValueError(f"signatures of {len(first)} and {len(second)} bytes")
    # Two values are equal exactly when their 4 bytes are, whatever the byte order, so
    # the native-order view compares them without unpacking.
    left, right = memoryview(first).cast("I"), memoryview(second).cast("I")
    return sum(map(eq, left, right)) / len(left)


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """The chance that LSH nominates a pair of this Jaccard similarity (the S-curve)."""
    return float(1 - (1 - similarity**rows) ** bands)


def band_hashes(signature: Signature, bands: int, rows: int) -> list[str]:
    """One short hex digest per band; two signatures share a band when the digests match."""
    data = signature
    width = rows * 4
    return [
        f"{band:02d}-{hashlib.blake2b(data[band * width : (band + 1) * width], digest_size=8).hexdigest()}"  # noqa: E501
        for band in range(bands)
    ]


@dataclass(frozen=True)
class NearMatch:
    of: str  # record id of the earlier record
    similarity: float


class MemoryLSH:
    """An in-memory LSH index: the records of one file, or a benchmark's whole drop.

    It also serves as the ``NearDuplicateIndex`` of tests and benchmarks. Bands are keyed
    by their raw bytes, one dict per band: nothing is persisted, so there is no need for
    ``band_hashes``' digests.
    """

    def __init__(self, *, threshold: float, bands: int, rows: int) -> None:
        self.threshold = threshold
        self.bands, self.rows = bands, rows
        self._width = rows * 4
        self._buckets: list[dict[bytes, list[str]]] = [{} for _ in range(bands)]
        self._signatures: dict[str, Signature] = {}

    def _band_keys(self, signature: Signature) -> list[bytes]:
        width = self._width
        return [signature[band * width : (band + 1) * width] for band in range(self.bands)]

    def best_match(self, signature: Signature, record_id: str | None = None) -> NearMatch | None:
        """The most similar indexed record at or above the threshold, if any.

        A record already in the index (``record_id`` found) matches nothing: it is itself.
        """
        candidates = self._candidates(self._band_keys(signature))
        if record_id is not None and record_id in candidates:
            return None
        best: NearMatch | None = None
        for other in candidates:
            similarity = jaccard_estimate(signature, self._signatures[other])
            if similarity >= self.threshold and (best is None or similarity > best.similarity):
                best = NearMatch(other, similarity)
        return best

    def insert(self, record_id: str, signature: Signature) -> None:
        self._signatures[record_id] = signature
        for buckets, key in zip(self._buckets, self._band_keys(signature), strict=True):
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = [record_id]
            else:
                bucket.append(record_id)

    def find(self, items: Sequence[tuple[str, Signature]]) -> dict[str, NearMatch]:
        found = {}
        for record_id, signature in items:
            match = self.best_match(signature, record_id)
            if match is not None:
                found[record_id] = match
        return found

    def add(self, items: Sequence[tuple[str, Signature]]) -> None:
        for record_id, signature in items:
            if record_id not in self._signatures:
                self.insert(record_id, signature)

    def _candidates(self, keys: Iterable[bytes]) -> dict[str, None]:
        # Ordered by band, then by insertion: ties between equally similar records go to
        # the first one found, as they always have.
        found: dict[str, None] = {}
        for buckets, key in zip(self._buckets, keys, strict=True):
            bucket = buckets.get(key)
            if bucket:
                found.update(dict.fromkeys(bucket))
        return found
