"""A tiny randomly initialized StarCoder2 and a locally trained tokenizer, for smoke tests and
CPU development: nothing can be downloaded here, and the real model is 15B parameters.

The tokenizer is byte-level BPE (as StarCoder2's), trained on Python source from the standard
library and this project's prompt examples, with StarCoder2's `<|endoftext|>` as end of text.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

EOS = "<|endoftext|>"


def _corpus(limit_files: int = 200) -> list[str]:
    from importlib import resources

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(resources.files("generator.prompts") / "examples.toml").read_text()]
    for path in sorted(stdlib.glob("*.py"))[:limit_files]:
        texts.append(path.read_text(encoding="utf-8", errors="replace"))
    return texts


def train_tokenizer(vocab_size: int = 2048):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS,
                                   unk_token=EOS, model_max_length=4096)


def make_tiny_model(out_dir: str | Path, vocab_size: int = 2048, hidden_size: int = 64, layers: int = 2,
                    heads: int = 4, kv_heads: int = 2, max_positions: int = 4096, seed: int = 0) -> Path:
    import torch
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(vocab_size)
    eos = tokenizer.eos_token_id
    assert isinstance(eos, int)
    config = Starcoder2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 4,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions, bos_token_id=eos, eos_token_id=eos, pad_token_id=eos,
        sliding_window=None, use_cache=True,
    )
    torch.manual_seed(seed)
    model = Starcoder2ForCausalLM(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
