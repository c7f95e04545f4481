#!/usr/bin/env python3
"""Writes a sentence-transformers BERT model (all-MiniLM-L6-v2) as a GGUF file that
llama.cpp runs as an embedding model: tensors renamed with gguf's own BERT name map, the
layers' matrices quantized to Q8_0, the WordPiece vocabulary in llama.cpp's "phantom
space" form, mean pooling, non-causal attention.

    convert-embedding-model.py MODEL_DIR OUT.gguf

MODEL_DIR holds config.json, model.safetensors, vocab.txt, tokenizer_config.json and
1_Pooling/config.json, as sentence-transformers saves them. Needs the `gguf`, `numpy` and
`safetensors` Python packages (scripts/fetch-model installs them outside the system).
"""

import json
import pathlib
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file


def main(model_dir: pathlib.Path, out: pathlib.Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        sys.exit(f"error: {model_dir}/config.json: model_type is not bert")
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens"):
        sys.exit(f"error: {model_dir}/1_Pooling/config.json: only mean pooling is supported")
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    if not tok_config.get("do_lower_case", False):
        sys.exit(f"error: {model_dir}/tokenizer_config.json: only lowercasing tokenizers")

    blocks = config["num_hidden_layers"]
    arch = gguf.MODEL_ARCH.BERT
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_name(model_dir.name)
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_block_count(blocks)
    writer.add_head_count(config["num_attention_heads"])
    writer.add_layer_norm_eps(config["layer_norm_eps"])
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)

    # WordPiece vocabulary, in id order. llama.cpp marks a word start with U+2581 instead
    # of marking continuations with "##".
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    tokens, types = [], []
    for t in vocab:
        if t.startswith("[") and t.endswith("]"):
            tokens.append(t)
            unused = t.startswith("[unused")
            types.append(gguf.TokenType.UNUSED if unused else gguf.TokenType.CONTROL)
        elif t.startswith("##"):
            tokens.append(t[2:])
            types.append(gguf.TokenType.NORMAL)
        else:
            tokens.append("\u2581" + t)
            types.append(gguf.TokenType.NORMAL)
    index = {t: i for i, t in enumerate(vocab)}
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(config.get("type_vocab_size", 2))
    for name, add in [
        ("[CLS]", writer.add_bos_token_id),
        ("[SEP]", writer.add_sep_token_id),
        ("[UNK]", writer.add_unk_token_id),
        ("[PAD]", writer.add_pad_token_id),
        ("[MASK]", writer.add_mask_token_id),
    ]:
        if name not in index:
            sys.exit(f"error: {model_dir}/vocab.txt has no {name} token")
        add(index[name])
    writer.add_add_bos_token(True)
    writer.add_add_sep_token(True)

    names = gguf.get_tensor_name_map(arch, blocks)
    for name, data in load_file(model_dir / "model.safetensors").items():
        name = name.removeprefix("bert.")
        if name == "embeddings.position_ids" or name.startswith(("pooler.", "cls.")):
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            sys.exit(f"error: {model_dir}/model.safetensors: no GGUF name for tensor {name}")
        # The layers' matrices as Q8_0 (8-bit blocks; a query embeds in about two thirds of
        # the time f16 takes on a CPU), the token table as f16; the
        # position and token-type tables are added to f32 states and stay f32, like norms
        # and biases.
        if data.ndim == 2 and new.startswith("blk."):
            q = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(new, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            continue
        half = data.ndim == 2 and new == "token_embd.weight"
        data = data.astype(np.float16 if half else np.float32)
        writer.add_tensor(new, data)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
