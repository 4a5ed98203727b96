"""Sentence embeddings without torch: a BERT sentence-transformers model converted to GGUF, run by llama.cpp.

Why: sentence-transformers pulls in torch (hundreds of MB, seconds to import) for a 22M-parameter model.
llama-cpp-python is already a dependency, and llama.cpp runs BERT encoders with mean pooling, so one
conversion (needs only `gguf` and `safetensors`) gives the same vectors (cosine > 0.99 against
sentence-transformers, checked by tests/integration/test_gguf_embedder.py) from a 46 MB f16 file.

The conversion follows llama.cpp's convert_hf_to_gguf.py (`BertModel`): same tensor names, same skipped
tensors (position_ids, pooler, MLM heads), and the WordPiece vocabulary rewritten to llama.cpp's word-start
convention ("##ing" -> "ing", "play" -> "\u2581play"; special tokens unchanged).
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS_KEY = "shoal.max_seq_length"  # the sentence-transformers truncation length, kept beside the weights
_SKIPPED = ("embeddings.position_ids", "pooler.", "cls.")  # unused for sentence embeddings, as in llama.cpp
_F32_ALWAYS = ("position_embd.weight", "token_types.weight")  # llama.cpp's converter keeps these f32 too
_SPECIALS = {"cls": "[CLS]", "sep": "[SEP]", "unk": "[UNK]", "pad": "[PAD]", "mask": "[MASK]"}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _bert_config(model_dir: Path) -> dict[str, Any]:
    """config.json, refusing anything llama.cpp's `bert` architecture would run wrongly (or not at all)."""
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a Hugging Face model folder: it has no config.json")
    config = _read_json(model_dir / "config.json")
    archs = config.get("architectures") or ["BertModel"]
    if config.get("model_type") != "bert" or not set(archs) <= {"BertModel", "BertForMaskedLM"}:
        raise ValueError(
            f"{model_dir} is not a BERT model: config.json says model_type={config.get('model_type')!r}, "
            f"architectures={archs!r}; only BertModel (e.g. all-MiniLM-L6-v2) can be converted"
        )
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{model_dir}: only absolute position embeddings and gelu are supported by llama.cpp's BERT")
    if not (model_dir / "vocab.txt").is_file():
        raise ValueError(f"{model_dir} has no vocab.txt: a WordPiece vocabulary is needed for llama.cpp's tokenizer")
    if not _read_json(model_dir / "tokenizer_config.json").get("do_lower_case", True):
        raise ValueError(f"{model_dir} is a cased model: llama.cpp's WordPiece tokenizer always lowercases")
    pooling = _read_json(model_dir / "1_Pooling" / "config.json")
    if pooling and not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{model_dir} does not use mean pooling (1_Pooling/config.json); only mean is supported")
    return config


def _load_weights(model_dir: Path) -> dict[str, np.ndarray]:
    """All tensors as numpy: safetensors needs no torch; torch is only the fallback for old pytorch_model.bin."""
    if (model_dir / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        return load_file(str(model_dir / "model.safetensors"))
    if (model_dir / "pytorch_model.bin").is_file():
        import torch

        state = torch.load(model_dir / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {name: tensor.float().numpy() for name, tensor in state.items()}
    raise ValueError(f"{model_dir} has no weights: expected model.safetensors or pytorch_model.bin")


def _vocab(model_dir: Path) -> tuple[list[str], list[int], dict[str, int]]:
    """Tokens in llama.cpp's convention, their types, and the special token ids.

    llama.cpp's WPM tokenizer marks a word start with "\u2581" where WordPiece marks a continuation with "##",
    so every normal token flips convention; CONTROL tokens (the specials) are matched verbatim."""
    import gguf

    with open(model_dir / "vocab.txt", encoding="utf-8") as f:  # read as transformers' load_vocab does
        words = [line.rstrip("\n") for line in f]
    ids = {word: i for i, word in reversed(list(enumerate(words)))}  # first occurrence wins, as in transformers
    names = {**_read_json(model_dir / "tokenizer_config.json"), **_read_json(model_dir / "special_tokens_map.json")}
    special_ids: dict[str, int] = {}
    for role, default in _SPECIALS.items():
        name = names.get(f"{role}_token") or default
        name = name["content"] if isinstance(name, dict) else name
        if name not in ids:
            raise ValueError(f"{model_dir}/vocab.txt lacks the {role} token {name!r}")
        special_ids[role] = ids[name]
    control = set(special_ids.values())
    tokens: list[str] = []
    types: list[int] = []
    for i, word in enumerate(words):
        if i in control:
            tokens.append(word)
            types.append(gguf.TokenType.CONTROL)
        else:
            tokens.append(word[2:] if word.startswith("##") else "\u2581" + word)
            types.append(gguf.TokenType.NORMAL)
    return tokens, types, special_ids


def convert_to_gguf(model_dir: Path, out: Path, *, dtype: str = "f16") -> Path:
    """Write a sentence-transformers BERT folder as a GGUF file for `llama_cpp.Llama(..., embedding=True)`.

    `dtype` "f16" halves the file (matrices only; biases, norms and position embeddings stay f32, as in
    llama.cpp's converter) at no measurable cost in cosine; "f32" is bit-for-bit the original weights.
    Written to a temporary file beside `out` and renamed, so a crash never leaves a half-written model.
    Raises ValueError if the folder is not a convertible BERT model."""
    import gguf

    if dtype not in ("f16", "f32", "q8_0"):
        raise ValueError(f"dtype must be 'f16', 'f32' or 'q8_0', not {dtype!r}")
    model_dir, out = Path(model_dir), Path(out)
    config = _bert_config(model_dir)
    tokens, types, special = _vocab(model_dir)
    n_blocks = int(config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_blocks)
    tensors: list[tuple[str, np.ndarray, Any]] = []  # (name, data, raw dtype for quantized data or None)
    for hf_name, array in _load_weights(model_dir).items():
        hf_name = hf_name.removeprefix("bert.")
        if hf_name.startswith(_SKIPPED):
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ValueError(f"{model_dir}: tensor {hf_name!r} has no place in llama.cpp's BERT architecture")
        matrix = array.ndim == 2 and name not in _F32_ALWAYS
        if dtype == "q8_0" and matrix and array.shape[-1] % 32 == 0:  # 8-bit blocks of 32: a quarter of f32
            quantized = gguf.quants.quantize(
                np.ascontiguousarray(array, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0
            )
            tensors.append((name, quantized, gguf.GGMLQuantizationType.Q8_0))
            continue
        half = dtype in ("f16", "q8_0") and matrix
        tensors.append((name, np.ascontiguousarray(array, dtype=np.float16 if half else np.float32), None))
    parts = ("attn_q", "attn_k", "attn_v", "ffn_up", "ffn_down")
    required = {"token_embd.weight", "position_embd.weight"} | {
        f"blk.{b}.{part}.weight" for b in range(n_blocks) for part in parts
    }
    if missing := sorted(required - {name for name, _, _ in tensors}):
        raise ValueError(f"{model_dir}: the weights lack {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    st_config = _read_json(model_dir / "sentence_bert_config.json")
    n_positions = int(config["max_position_embeddings"])

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")  # not mkstemp: its 0600 would stick to `out`
    try:
        writer = gguf.GGUFWriter(tmp, arch="bert")
        writer.add_name(str(config.get("_name_or_path") or model_dir.name))
        writer.add_context_length(n_positions)
        writer.add_embedding_length(int(config["hidden_size"]))
        writer.add_feed_forward_length(int(config["intermediate_size"]))
        writer.add_block_count(n_blocks)
        writer.add_head_count(int(config["num_attention_heads"]))
        writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
        writer.add_causal_attention(False)
        writer.add_pooling_type(gguf.PoolingType.MEAN)
        file_types = {
            "f16": gguf.LlamaFileType.MOSTLY_F16,
            "f32": gguf.LlamaFileType.ALL_F32,
            "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        }
        writer.add_file_type(file_types[dtype])
        writer.add_uint32(MAX_TOKENS_KEY, min(int(st_config.get("max_seq_length", n_positions)), n_positions))
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_type_count(int(config.get("type_vocab_size", 2)))
        writer.add_bos_token_id(special["cls"])  # llama.cpp's BERT uses BOS as [CLS]
        writer.add_sep_token_id(special["sep"])
        writer.add_unk_token_id(special["unk"])
        writer.add_pad_token_id(special["pad"])
        writer.add_mask_token_id(special["mask"])
        writer.add_add_bos_token(True)  # tokenize(add_special) gives [CLS] ... [SEP], like BertTokenizer
        writer.add_add_sep_token(True)
        writer.add_add_eos_token(False)
        for name, array, raw_dtype in tensors:
            writer.add_tensor(name, array, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


class LlamaEmbedder:
    """Embeds texts with a GGUF BERT model through llama.cpp; a drop-in for the sentence-transformers embedder.

    Texts are cut to `max_tokens` tokens (the model's sentence-transformers `max_seq_length`, 256 for
    all-MiniLM-L6-v2, stored in the GGUF by `convert_to_gguf`), keeping the final [SEP], exactly as
    sentence-transformers truncates, instead of llama-cpp-python's `embed()`, which cuts at n_batch tokens
    and drops [SEP]. Thread-safe: one lock around the llama.cpp context."""

    N_CTX = 512
    PACK_TOKENS = 128  # tokens per llama.cpp call (a longer text goes alone): see embed()

    def __init__(self, gguf_path: Path, *, n_threads: int | None = None, max_chars: int = 1000) -> None:
        self.gguf_path = Path(gguf_path)
        stat = self.gguf_path.stat()
        self.model_id = f"gguf:{self.gguf_path.name}:{stat.st_size}"
        self.dim = 0  # known after load()
        self.max_tokens = 0  # known after load()
        self.max_chars = max_chars  # a chunk-size hint for callers: ~4 characters per token of English prose
        self._n_threads = n_threads
        self._lock = threading.Lock()
        self._llama: Any = None
        self._batch: Any = None
        self._n_seq_max = 1

    def load(self) -> None:
        """Load the model (blocking, 0.2-0.5 s on 2 cores); a no-op when loaded."""
        with self._lock:
            if self._llama is not None:
                return
            import llama_cpp

            llama = llama_cpp.Llama(
                model_path=str(self.gguf_path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=self.N_CTX,
                n_batch=self.N_CTX,
                n_ubatch=self.N_CTX,
                n_threads=self._n_threads,
                n_threads_batch=self._n_threads,
                verbose=False,
            )
            n_train = llama_cpp.llama_model_n_ctx_train(llama.model)
            self.max_tokens = min(int(llama.metadata.get(MAX_TOKENS_KEY, n_train)), n_train, self.N_CTX)
            self.dim = llama.n_embd()
            self._n_seq_max = llama_cpp.llama_n_seq_max(llama.ctx)
            self._batch = llama_cpp.llama_batch_init(self.N_CTX, 0, 1)
            self._llama = llama

    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 array (len(texts), dim), rows L2-normalised; blocking. Loads the model if needed.

        Each text is tokenized as [CLS] text [SEP] and cut to `max_tokens` tokens (the last kept token is [SEP]);
        short texts are packed, one llama.cpp sequence each, into calls of about `PACK_TOKENS` tokens: attention
        spans a whole call, so 512-token packs measured 1.3-1.6x slower than 128 (sentences and 150-token chunks)."""
        self.load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            if self._llama is None:
                raise RuntimeError("LlamaEmbedder was closed while embedding")
            pieces = [self._tokens(text) for text in texts]
            group: list[int] = []
            used = 0
            for i, tokens in enumerate(pieces):
                if group and (used + len(tokens) > self.PACK_TOKENS or len(group) >= self._n_seq_max):
                    self._encode(group, pieces, out)
                    group, used = [], 0
                group.append(i)
                used += len(tokens)
            if group:
                self._encode(group, pieces, out)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.divide(out, norms, out=out, where=norms > 0)

    def _tokens(self, text: str) -> list[int]:
        tokens: list[int] = self._llama.tokenize(text.encode("utf-8", "replace"), add_bos=True, special=False)
        if len(tokens) > self.max_tokens:
            tokens = tokens[: self.max_tokens - 1] + tokens[-1:]  # keep [SEP], as BertTokenizer truncation does
        return tokens

    def _encode(self, group: list[int], pieces: list[list[int]], out: np.ndarray) -> None:
        """One llama.cpp call for the texts in `group` (sequence k is text group[k]); vectors into `out`."""
        import llama_cpp

        batch, ctx = self._batch, self._llama.ctx
        j = 0
        for seq, i in enumerate(group):
            for pos, token in enumerate(pieces[i]):
                batch.token[j], batch.pos[j], batch.n_seq_id[j], batch.logits[j] = token, pos, 1, 1
                batch.seq_id[j][0] = seq
                j += 1
        batch.n_tokens = j
        code = llama_cpp.llama_encode(ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_encode failed with code {code}")
        for seq, i in enumerate(group):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx, seq)
            if not pointer:
                raise RuntimeError("llama.cpp returned no pooled embedding: is the model a pooled embedding model?")
            out[i] = np.ctypeslib.as_array(pointer, shape=(self.dim,))
        memory = llama_cpp.llama_get_memory(ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)

    def close(self) -> None:
        """Free the model and its context; `load()` may be called again afterwards."""
        with self._lock:
            if self._llama is None:
                return
            import llama_cpp

            llama_cpp.llama_batch_free(self._batch)
            self._llama.close()
            self._llama = self._batch = None
