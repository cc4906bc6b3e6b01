"""Built-in encoders: features → embeddings."""
