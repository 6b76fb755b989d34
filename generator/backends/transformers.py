"""Plain Hugging Face generation: slow, but runs anywhere, including CPU tests on a tiny model.

Prompts go through the model in batches (`batch_size`, left-padded), each batch seeded from its
first prompt's seed: a stage's batches are fixed by its config, so a resumed run gives the same
samples as an uninterrupted one.
"""

from __future__ import annotations

from generator.backends import Completion, Sampling, cut_at_stop, hold_back_partial_character, resolve_dtype


class TransformersBackend:
    def __init__(self, model: str, device: str | None = None, dtype: str = "auto",
                 max_prompt_tokens: int | None = None, batch_size: int = 8) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"   # generation continues at the right end
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.dtype = resolve_dtype(model, dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=self.dtype)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()  # pyright: ignore[reportArgumentType]  (transformers' stubs)
        self.max_prompt_tokens = max_prompt_tokens or getattr(self.model.config, "max_position_embeddings", 4096)
        self.batch_size = max(1, batch_size)
        self.special_ids = set(self.tokenizer.all_special_ids)

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        from tqdm import tqdm

        results: list[list[Completion]] = []
        starts = range(0, len(prompts), self.batch_size)
        for start in tqdm(starts, desc="generate", unit="batch", disable=len(starts) < 2, leave=False):
            results += self._batch(prompts[start:start + self.batch_size], sampling, seeds[start])
        return results

    def _batch(self, prompts: list[str], sampling: Sampling, seed: int) -> list[list[Completion]]:
        torch = self.torch
        room = max(self.max_prompt_tokens - sampling.max_new_tokens, 1)
        self.tokenizer.truncation_side = "left"   # keep the end: the query is last
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, truncation=True, max_length=room)
        ids, mask = enc.input_ids.to(self.device), enc.attention_mask.to(self.device)
        torch.manual_seed(seed)
        with torch.no_grad():
            out = self.model.generate(  # pyright: ignore[reportAttributeAccessIssue]
                ids, attention_mask=mask, do_sample=sampling.temperature > 0,
                temperature=sampling.temperature or None, top_p=sampling.top_p,
                max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
                pad_token_id=self.tokenizer.pad_token_id, stop_strings=list(sampling.stop) or None,
                tokenizer=self.tokenizer)
        eos = self.tokenizer.eos_token_id
        results = []
        for i in range(len(prompts)):
            samples = []
            for seq in out[i * sampling.n:(i + 1) * sampling.n]:
                new = seq[ids.shape[1]:].tolist()
                ended = eos is not None and eos in new
                text_ids = new
                while text_ids and text_ids[-1] in self.special_ids:   # EOS and padding after it
                    text_ids = text_ids[:-1]
                text = self.tokenizer.decode(text_ids, skip_special_tokens=True)
                text = hold_back_partial_character(text)
                text, stopped = cut_at_stop(text, sampling.stop)
                full = len(new) >= sampling.max_new_tokens and not stopped and not ended
                samples.append(Completion(text, "length" if full else "stop"))
            results.append(samples)
        return results
