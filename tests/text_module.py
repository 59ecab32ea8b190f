"""A tiny TF Hub-format text-embedding module, built offline for tests: a TF2 SavedModel whose
`__call__` maps a batch of strings to a fixed-size vector, the mean of its words' embeddings. Words are
looked up in a vocabulary file (an asset, as in TF Hub's NNLM modules), other words hash into
`oov_buckets` extra rows."""
import os
import shutil
import tempfile

import tensorflow as tf

DIM = 16
OOV_BUCKETS = 64
# A general word list, not the test tables' words: most of those are out of vocabulary.
VOCABULARY = ["the", "a", "and", "was", "is", "very", "food", "service", "place", "good", "bad"]


def build(directory: str, dim: int = DIM, oov_buckets: int = OOV_BUCKETS, seed: int = 7) -> str:
    """Writes the module to `directory` (TF Hub's Reusable SavedModel API: `__call__`, `variables`,
    `trainable_variables`, `regularization_losses`) and returns it."""
    vocabulary_file = os.path.join(tempfile.mkdtemp(prefix="text_module_"), "tokens.txt")
    with open(vocabulary_file, "w", encoding="utf-8") as f:
        f.write("\n".join(VOCABULARY) + "\n")
    module = tf.train.Checkpoint()
    module.table = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(vocabulary_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                      tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
        num_oov_buckets=oov_buckets)
    module.embeddings = tf.Variable(
        tf.random.stateless_normal([len(VOCABULARY) + oov_buckets, dim], seed=[seed, 0]),
        name="embeddings")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def embed(texts):
        words = tf.strings.split(tf.strings.lower(texts))
        ids = tf.ragged.map_flat_values(module.table.lookup, words)
        vectors = tf.ragged.map_flat_values(tf.gather, module.embeddings, ids)
        counts = tf.cast(tf.maximum(words.row_lengths(), 1), tf.float32)[:, tf.newaxis]
        return tf.math.reduce_sum(vectors, axis=1) / counts  # an empty text: zeros

    module.__call__ = embed
    module.variables = [module.embeddings]
    module.trainable_variables = [module.embeddings]
    module.regularization_losses = []
    tf.saved_model.save(module, directory)
    shutil.rmtree(os.path.dirname(vocabulary_file))  # the module holds its own copy (assets/tokens.txt)
    return directory
