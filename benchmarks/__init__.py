"""Benchmarks: the problems (`problems`) and the texts decontamination looks for (`texts`).

A package of its own because three layers use it: the executor's bench, the generator's
decontamination and the trainer's evaluation. It depends on none of them.
"""
