"""Lineage: what each model was made from, and how to make it again.

`datasets` gives data its content address, `runs` reads a run directory into a registry record,
`cards` writes the model card, `diff` sets two runs side by side, `reproduce` re-runs one and
checks the numbers, and `hooks` are the calls that training and evaluation make into all this.
"""
