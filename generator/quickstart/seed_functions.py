"""Seed functions for the CPU quickstart: small, documented, standalone (written for this project)."""


def moving_average(values, window):
    """Return the averages of every run of `window` consecutive values."""
    if window <= 0:
        raise ValueError("window must be positive")
    total = sum(values[:window])
    averages = [total / window] if len(values) >= window else []
    for i in range(window, len(values)):
        total += values[i] - values[i - window]
        averages.append(total / window)
    return averages


def is_balanced(text):
    """Tell whether every bracket in `text` is closed in the right order."""
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for char in text:
        if char in "([{":
            stack.append(char)
        elif char in pairs:
            if not stack or stack.pop() != pairs[char]:
                return False
    return not stack


def run_length_encode(text):
    """Compress runs of a repeated character into (character, count) pairs."""
    runs = []
    for char in text:
        if runs and runs[-1][0] == char:
            runs[-1][1] += 1
        else:
            runs.append([char, 1])
    return [(char, count) for char, count in runs]


def merge_intervals(intervals):
    """Merge overlapping closed intervals given as (start, end) pairs."""
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [tuple(pair) for pair in merged]


def flatten(nested):
    """Flatten arbitrarily nested lists into one list, keeping the order."""
    flat = []
    for item in nested:
        if isinstance(item, list):
            flat.extend(flatten(item))
        else:
            flat.append(item)
    return flat


def word_lengths(sentence):
    """Map each distinct word of a sentence to its length."""
    return {word: len(word) for word in sentence.split()}
