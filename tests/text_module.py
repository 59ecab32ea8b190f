"""A tiny TF Hub-format text-embedding module, built offline for tests: a TF2 SavedModel whose
`__call__` maps a batch of strings to a fixed-size vector (the mean of its hashed words' embeddings)."""
import tensorflow as tf

DIM = 16
BUCKETS = 256


def build(directory: str, dim: int = DIM, buckets: int = BUCKETS, seed: int = 7) -> str:
    """Writes the module to `directory` (TF Hub's Reusable SavedModel API: `__call__`, `variables`,
    `trainable_variables`, `regularization_losses`) and returns it."""
    module = tf.train.Checkpoint()
    module.embeddings = tf.Variable(
        tf.random.stateless_normal([buckets, dim], seed=[seed, 0]), name="embeddings")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed(texts):
        words = tf.strings.split(tf.strings.lower(texts))
        ids = tf.strings.to_hash_bucket_fast(words, buckets)
        vectors = tf.ragged.map_flat_values(tf.gather, module.embeddings, ids)
        counts = tf.cast(tf.maximum(words.row_lengths(), 1), tf.float32)[:, tf.newaxis]
        return tf.math.reduce_sum(vectors, axis=1) / counts  # an empty text: zeros

    module.__call__ = embed
    module.variables = [module.embeddings]
    module.trainable_variables = [module.embeddings]
    module.regularization_losses = []
    tf.saved_model.save(module, directory)
    return directory
