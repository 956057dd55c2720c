"""One combination: the trainer, evaluation, decoding, and the record it produces."""
