"""Convert all-MiniLM-L6-v2 (model.safetensors) into a small int8 .npz for encoder.py.

Usage: python scripts/convert_minilm.py [MODEL_DIR] [--out minilm-l6-int8.npz] [--emb-fp16] [--compress]

Layout of the output (all names flat so np.load can read it lazily):
  emb.word.q int8 (30522, 384) + emb.word.s float32 (30522,)   per-row symmetric int8
  (or emb.word float16 with --emb-fp16)
  emb.pos float16 (512, 384), emb.type float16 (2, 384), emb.ln.{w,b} float32
  l{i}.{q,k,v,o,i,f}.q int8 (out, in) + .s float32 (out,) + .b float32 (out,)
  l{i}.ln1.{w,b}, l{i}.ln2.{w,b} float32
The pooler is dropped: sentence-transformers uses mean pooling, not the BERT pooler.
"""

from __future__ import annotations

import argparse
import json
import struct
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("model")  # the model folder: safetensors, config.json, tokenizer.json

_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "BF16": None}

# Short names for the six linear maps of a BERT layer -> safetensors prefix.
_LINEARS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "i": "intermediate.dense",
    "f": "output.dense",
}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Parse the safetensors format by hand: u64 header length, JSON header, raw buffer."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dt = _DTYPES.get(meta["dtype"])
        if dt is None:
            raise ValueError(f"unsupported dtype {meta['dtype']} for {name}")
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(raw, dtype=dt, count=(b - a) // np.dtype(dt).itemsize,
                                  offset=base + a).reshape(meta["shape"])
    return out


def quantise_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: w ~= q * s[:, None], |q| <= 127 (no -128, keeps it symmetric)."""
    w = w.astype(np.float32)
    s = np.abs(w).max(axis=1) / 127.0
    s = np.where(s > 0, s, 1.0).astype(np.float32)  # all-zero rows would divide by 0
    q = np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int8)
    return q, s


def convert(model_dir: Path, out: Path, emb_fp16: bool, compress: bool) -> dict[str, float]:
    t = read_safetensors(model_dir / "model.safetensors")
    cfg = json.loads((model_dir / "config.json").read_text())
    arrs: dict[str, np.ndarray] = {}
    errs: dict[str, float] = {}

    word = t["embeddings.word_embeddings.weight"]
    if emb_fp16:
        arrs["emb.word"] = word.astype(np.float16)
    else:
        arrs["emb.word.q"], arrs["emb.word.s"] = quantise_rows(word)
        errs["emb.word"] = _rel_err(word, arrs["emb.word.q"], arrs["emb.word.s"])
    arrs["emb.pos"] = t["embeddings.position_embeddings.weight"].astype(np.float16)
    arrs["emb.type"] = t["embeddings.token_type_embeddings.weight"].astype(np.float16)
    arrs["emb.ln.w"] = t["embeddings.LayerNorm.weight"].astype(np.float32)
    arrs["emb.ln.b"] = t["embeddings.LayerNorm.bias"].astype(np.float32)

    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for short, name in _LINEARS.items():
            w = t[p + name + ".weight"]  # torch Linear layout: (out, in) -> per-output-row scale
            q, s = quantise_rows(w)
            arrs[f"l{i}.{short}.q"], arrs[f"l{i}.{short}.s"] = q, s
            arrs[f"l{i}.{short}.b"] = t[p + name + ".bias"].astype(np.float32)
            errs[f"l{i}.{short}"] = _rel_err(w, q, s)
        arrs[f"l{i}.ln1.w"] = t[p + "attention.output.LayerNorm.weight"].astype(np.float32)
        arrs[f"l{i}.ln1.b"] = t[p + "attention.output.LayerNorm.bias"].astype(np.float32)
        arrs[f"l{i}.ln2.w"] = t[p + "output.LayerNorm.weight"].astype(np.float32)
        arrs[f"l{i}.ln2.b"] = t[p + "output.LayerNorm.bias"].astype(np.float32)

    # Config travels with the weights so encoder.py hard-codes nothing model-specific.
    arrs["config"] = np.array([cfg["num_hidden_layers"], cfg["num_attention_heads"],
                               cfg["hidden_size"], cfg["max_position_embeddings"]], np.int32)
    arrs["ln_eps"] = np.array(cfg["layer_norm_eps"], np.float64)

    if compress:  # saves only ~8% (int8 weights are near-incompressible) and slows loading
        np.savez_compressed(out, **arrs)  # type: ignore[arg-type]
    else:
        np.savez(out, **arrs)  # type: ignore[arg-type]
    return errs


def _rel_err(w: np.ndarray, q: np.ndarray, s: np.ndarray) -> float:
    d = q.astype(np.float32) * s[:, None] - w
    return float(np.linalg.norm(d) / np.linalg.norm(w))


def write_tokenizer(model_dir: Path, out: Path) -> None:
    """Copy tokenizer.json minus its baked-in truncation/padding (128, Fixed 128):
    encoder.py truncates itself and pads per batch, so fixed padding would only waste work."""
    tok = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tok["truncation"] = None
    tok["padding"] = None
    out.write_text(json.dumps(tok, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("minilm-l6-int8.npz"))
    ap.add_argument("--emb-fp16", action="store_true", help="keep word embeddings float16")
    ap.add_argument("--compress", action="store_true", help="np.savez_compressed")
    a = ap.parse_args()
    errs = convert(a.model_dir, a.out, a.emb_fp16, a.compress)
    write_tokenizer(a.model_dir, a.out.with_name("tokenizer.json"))
    worst = max(errs, key=errs.__getitem__)
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB); "
          f"worst relative weight error {worst}={errs[worst]:.4f}, "
          f"mean={np.mean(list(errs.values())):.4f}")


if __name__ == "__main__":
    main()
