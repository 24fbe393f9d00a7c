"""Training: the loop over a pure step (loop), batches, fitting of non-gradient kinds, device parallelism and multi-host setup."""
