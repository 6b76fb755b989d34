"""Plain Hugging Face generation: slow, but runs anywhere, including CPU tests on a tiny model."""

from __future__ import annotations

from generator.backends import Completion, Sampling, cut_at_stop


class TransformersBackend:
    def __init__(self, model: str, device: str | None = None, dtype: str = "auto",
                 max_prompt_tokens: int | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model, torch_dtype=dtype)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.max_prompt_tokens = max_prompt_tokens or getattr(self.model.config, "max_position_embeddings", 4096)

    def generate(self, prompts: list[str], sampling: Sampling, seeds: list[int]) -> list[list[Completion]]:
        from tqdm import tqdm

        torch = self.torch
        results = []
        for prompt, seed in tqdm(list(zip(prompts, seeds, strict=True)), desc="generate", unit="prompt",
                                 disable=len(prompts) < 2, leave=False):
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids
            room = self.max_prompt_tokens - sampling.max_new_tokens
            ids = ids[:, -max(room, 1):].to(self.device)  # keep the end: the query is last
            torch.manual_seed(seed)
            with torch.no_grad():
                out = self.model.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=sampling.temperature > 0,
                    temperature=sampling.temperature or None, top_p=sampling.top_p,
                    max_new_tokens=sampling.max_new_tokens, num_return_sequences=sampling.n,
                    pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                    stop_strings=list(sampling.stop) or None, tokenizer=self.tokenizer)
            samples = []
            for seq in out:
                new = seq[ids.shape[1]:]
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                text, stopped = cut_at_stop(text, sampling.stop)
                ended = self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id in new.tolist()
                full = len(new) >= sampling.max_new_tokens and not stopped and not ended
                samples.append(Completion(text, "length" if full else "stop"))
            results.append(samples)
        return results
