"""Pure-numpy forward pass of sentence-transformers/all-MiniLM-L6-v2.

BERT (6 layers, hidden 384, 12 heads, FFN 1536, exact-erf GELU, post-LayerNorm eps 1e-12)
-> mean pooling over the attention mask -> L2 normalisation, i.e. the same pipeline as
SentenceTransformer("all-MiniLM-L6-v2"). Weights come from convert.py (int8, per-row
scales) and are dequantised to float32 once at load. Dependencies: numpy, tokenizers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

_HERE = Path(__file__).resolve().parent
_F32 = np.float32
# Added to masked (padding) key scores before softmax. exp() of it underflows to exactly 0,
# so padded keys contribute nothing: a text's embedding depends on its batch-mates only
# through float summation order (~1e-7), and identical calls are bit-identical.
_MASK_NEG = _F32(-1e9)
# Rows per batch scale inversely with padded length, bounding the (B, heads, L, L)
# attention tensor and (B*L, 1536) FFN activations to a few tens of MB.
_TOKENS_PER_BATCH = 4096

# Abramowitz & Stegun 7.1.26: erf(z) = 1 - t*P(t)*exp(-z^2), t = 1/(1+p z), |err| < 1.5e-7,
# i.e. float32-exact for our purpose. numpy has no erf and the tanh GELU would be a
# different function from the one the model was trained with. Constants are pre-folded:
# z = |x|/sqrt2 goes into p, and the 1/2 of Phi into the coefficients (a5 .. a1, Horner order).
_AS_P = _F32(0.3275911 / np.sqrt(2.0))
_AS_A = tuple(_F32(0.5 * a) for a in
              (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
# GELU runs ~20 elementwise passes; doing them on cache-sized row blocks instead of the whole
# (tokens, 1536) array makes it ~3x faster (it was a third of the forward time).
_GELU_ROWS = 64


def _gelu_(x: np.ndarray) -> np.ndarray:
    """In-place exact GELU x*Phi(x) on a 2-D C-contiguous array.
    With c = Phi(-|x|): x*Phi(x) = max(x, 0) - |x|*c for either sign of x."""
    w = x.shape[1]
    a, t, p = (np.empty((_GELU_ROWS, w), _F32) for _ in range(3))
    for s in range(0, x.shape[0], _GELU_ROWS):
        xc = x[s : s + _GELU_ROWS]
        m = xc.shape[0]
        aa, tt, pp = a[:m], t[:m], p[:m]
        np.abs(xc, out=aa)
        np.multiply(aa, _AS_P, out=tt)
        tt += 1.0
        np.reciprocal(tt, out=tt)
        np.multiply(tt, _AS_A[0], out=pp)
        for coef in _AS_A[1:]:
            pp += coef
            pp *= tt
        np.multiply(aa, aa, out=tt)
        tt *= _F32(-0.5)
        np.exp(tt, out=tt)  # exp(-z^2)
        pp *= tt  # c = Phi(-|x|)
        pp *= aa
        np.maximum(xc, 0.0, out=xc)
        xc -= pp
    return x


def _layer_norm_(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    x -= mu
    var = np.mean(np.square(x), axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(var + _F32(eps))
    x *= w
    x += b
    return x


class Encoder:
    """Load once (~0.15 s), then call encode(). Read-only after __init__."""

    def __init__(self, weights: str | Path = _HERE / "minilm-l6-int8.npz",
                 tokenizer: str | Path = _HERE / "tokenizer.json") -> None:
        with np.load(weights) as z:
            n_layers, self.n_heads, self.dim, self.max_pos = (int(v) for v in z["config"])
            self.eps = float(z["ln_eps"])

            def lin(name: str) -> np.ndarray:
                # Stored (out, in) like torch; transpose once so forward is x @ W (in, out).
                w = z[name + ".q"].astype(_F32) * z[name + ".s"][:, None]
                return np.ascontiguousarray(w.T)

            if "emb.word.q" in z:
                self.word = z["emb.word.q"].astype(_F32) * z["emb.word.s"][:, None]
            else:
                self.word = z["emb.word"].astype(_F32)
            # token_type_ids are always 0 for single sentences: fold type row 0 into positions.
            self.pos = z["emb.pos"].astype(_F32) + z["emb.type"][0].astype(_F32)
            self.emb_ln = (z["emb.ln.w"], z["emb.ln.b"])
            head_dim = self.dim // self.n_heads
            scale = _F32(1.0 / np.sqrt(head_dim))
            self.layers: list[dict[str, np.ndarray]] = []
            for i in range(n_layers):
                p = f"l{i}."
                # Fuse Q, K, V into one GEMM and pre-scale Q by 1/sqrt(head_dim).
                w_qkv = np.concatenate([lin(p + "q") * scale, lin(p + "k"), lin(p + "v")], axis=1)
                b_qkv = np.concatenate([z[p + "q.b"] * scale, z[p + "k.b"], z[p + "v.b"]])
                self.layers.append({
                    "w_qkv": np.ascontiguousarray(w_qkv), "b_qkv": b_qkv.astype(_F32),
                    "w_o": lin(p + "o"), "b_o": z[p + "o.b"],
                    "ln1_w": z[p + "ln1.w"], "ln1_b": z[p + "ln1.b"],
                    "w_i": lin(p + "i"), "b_i": z[p + "i.b"],
                    "w_f": lin(p + "f"), "b_f": z[p + "f.b"],
                    "ln2_w": z[p + "ln2.w"], "ln2_b": z[p + "ln2.b"],
                })
        self.tok = Tokenizer.from_file(str(tokenizer))
        # Truncation/padding are done here per batch, whatever the JSON file says.
        self.tok.no_truncation()
        self.tok.no_padding()
        sep = self.tok.token_to_id("[SEP]")
        if sep is None:
            raise ValueError("tokenizer has no [SEP] token")
        self.sep_id: int = sep

    def tokenize(self, texts: Sequence[str], max_tokens: int) -> list[list[int]]:
        """WordPiece ids with [CLS] ... [SEP], cut to max_tokens keeping the final [SEP]
        (same result as HF truncation of a single sequence to max_length)."""
        out: list[list[int]] = []
        for enc in self.tok.encode_batch(list(texts), add_special_tokens=True):
            ids = enc.ids
            if len(ids) > max_tokens:
                ids = ids[: max_tokens - 1] + [self.sep_id]
            out.append(ids)
        return out

    def encode(self, texts: Sequence[str], max_tokens: int = 128) -> np.ndarray:
        """(n, 384) float32 L2-normalised embeddings, in input order."""
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of strings, not a single str")
        if not 2 <= max_tokens <= self.max_pos:
            raise ValueError(f"max_tokens must be in [2, {self.max_pos}]")
        out = np.zeros((len(texts), self.dim), _F32)
        if not texts:
            return out
        ids = self.tokenize(texts, max_tokens)
        # Sort by length (stable, so ties keep input order -> deterministic batches)
        # so each batch pads to nearly its own length.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        while start < len(order):
            # Grow the batch while rows * (its longest, i.e. last, length) fits the budget.
            end = start + 1
            while (end < len(order)
                   and (end - start + 1) * len(ids[order[end]]) <= _TOKENS_PER_BATCH):
                end += 1
            idx = order[start:end]
            out[idx] = self._forward([ids[i] for i in idx])
            start += len(idx)
        return out

    def _forward(self, batch: list[list[int]]) -> np.ndarray:
        n, length = len(batch), max(len(b) for b in batch)
        ids = np.zeros((n, length), np.int64)  # 0 = [PAD]
        mask = np.zeros((n, length), _F32)
        for r, b in enumerate(batch):
            ids[r, : len(b)] = b
            mask[r, : len(b)] = 1.0
        d, h = self.dim, self.n_heads
        hd = d // h

        x = self.word[ids] + self.pos[:length]  # (n, L, d)
        x = _layer_norm_(x.reshape(n * length, d), *self.emb_ln, self.eps)
        # Additive key mask, broadcast over heads and query positions.
        key_bias = ((1.0 - mask) * _MASK_NEG)[:, None, None, :]

        for ly in self.layers:
            qkv = x @ ly["w_qkv"]
            qkv += ly["b_qkv"]
            # (n*L, 3d) -> (3, n, h, L, hd)
            qkv = qkv.reshape(n, length, 3, h, hd).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            s = q @ k.transpose(0, 1, 3, 2)  # (n, h, L, L); Q already carries 1/sqrt(hd)
            s += key_bias
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n * length, d)
            a = ctx @ ly["w_o"]
            a += ly["b_o"]
            a += x
            x = _layer_norm_(a, ly["ln1_w"], ly["ln1_b"], self.eps)
            f = x @ ly["w_i"]
            f += ly["b_i"]
            f = _gelu_(f) @ ly["w_f"]
            f += ly["b_f"]
            f += x
            x = _layer_norm_(f, ly["ln2_w"], ly["ln2_b"], self.eps)

        # Mean over real tokens only ([CLS] and [SEP] included, as sentence-transformers does).
        x = x.reshape(n, length, d)
        pooled = (mask[:, None, :] @ x)[:, 0] / mask.sum(axis=1, keepdims=True)
        norm = np.linalg.norm(pooled, axis=1, keepdims=True)
        emb: np.ndarray = (pooled / np.maximum(norm, 1e-12)).astype(_F32)
        return emb
