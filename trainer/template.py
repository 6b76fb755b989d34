"""The StarCoder2-Instruct prompt layout, as a chat template and as training examples.

Layout: a system line, then `### Instruction`, then `### Response`. It is saved as the
tokenizer's chat template, so the trained model works with `apply_chat_template` exactly as it
was trained.

Training examples tokenize the prompt and the response separately and mask the prompt out of
the loss (labels -100). The response ends with EOS, and that EOS is a label too: StarCoder2's
pad token is its EOS, so a collator that masked padding by token id would also mask the one
EOS the model must learn to emit. Padding is therefore masked by position, never by id.
"""

from __future__ import annotations

from dataclasses import dataclass

# The published StarCoder2-15B-Instruct system line, kept verbatim as an interface constant: a
# model trained here, or the reference model evaluated here, sees exactly the prompt it expects.
SYSTEM = ("You are an exceptionally intelligent coding assistant that consistently delivers accurate "
          "and reliable responses to user instructions.")
IGNORE = -100

# Jinja, as transformers renders it. It renders exactly as the released model's template does:
# the response header comes last whether or not `add_generation_prompt` is given, because the
# model card's own example calls `apply_chat_template(messages, tokenize=False)` without it and
# appends a response prefix. Any role but user is rendered as an assistant turn there too.
CHAT_TEMPLATE = (
    "{{ bos_token }}{{ '" + SYSTEM + "\\n\\n' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ raise_exception('the StarCoder2-Instruct layout has a fixed system line') }}"
    "{% elif message['role'] == 'user' %}"
    "{{ '### Instruction\\n' + message['content'] + '\\n\\n' }}"
    "{% else %}"
    "{{ '### Response\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{{ '### Response\\n' }}"
)


def prompt_text(instruction: str, bos: str = "") -> str:
    """The prompt the model sees before its response (what the template renders)."""
    return f"{bos}{SYSTEM}\n\n### Instruction\n{instruction}\n\n### Response\n"


@dataclass(frozen=True)
class Tokenized:
    input_ids: list[int]
    labels: list[int]
    truncated: bool
    prompt_tokens: int


def tokenize_example(tokenizer, instruction: str, response: str, max_length: int = 1280) -> Tokenized:
    bos = tokenizer.bos_token or ""
    prompt_ids = tokenizer(prompt_text(instruction, bos), add_special_tokens=False).input_ids
    response_ids = tokenizer(response, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    ids = prompt_ids + response_ids
    labels = [IGNORE] * len(prompt_ids) + response_ids
    truncated = len(ids) > max_length
    return Tokenized(ids[:max_length], labels[:max_length], truncated, len(prompt_ids))


def install_chat_template(tokenizer) -> None:
    tokenizer.chat_template = CHAT_TEMPLATE


def save_tokenizer(tokenizer, out) -> None:
    """Save with the chat template both in `chat_template.jinja` (where transformers 4.4x+ looks)
    and in `tokenizer_config.json` (where older transformers, vLLM's and TGI's loaders and other
    tools read it)."""
    import json
    from pathlib import Path

    tokenizer.save_pretrained(str(out))
    config_path = Path(out) / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = tokenizer.chat_template
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    (Path(out) / "chat_template.jinja").write_text(tokenizer.chat_template)
