"""Custom Keras layers, each written to the Keras lifecycle.

`__init__` validates plain arguments and creates no weights; `build` creates every weight with
`add_weight`; `call` is tensor math; `get_config` returns every constructor argument. All are registered
so a saved model reloads without `custom_objects`.
"""
import tensorflow as tf

_PACKAGE = "tabular_pipeline"


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    return value


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class DenseWithActivation(tf.keras.layers.Layer):
    """A fully connected layer, `activation(inputs @ kernel + bias)`."""

    def __init__(self, units: int, activation="relu", use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.units = _positive_int("units", units)
        self.activation = tf.keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)
        self.kernel_regularizer = tf.keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        input_dim = tf.TensorShape(input_shape)[-1]
        if input_dim is None:
            raise ValueError(f"{self.name}: the last dimension of the input must be known.")
        self.kernel = self.add_weight(
            name="kernel", shape=(input_dim, self.units), initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer, trainable=True)
        self.bias = (self.add_weight(name="bias", shape=(self.units,),
                                     initializer=self.bias_initializer, trainable=True)
                     if self.use_bias else None)
        super().build(input_shape)

    def call(self, inputs):
        outputs = tf.matmul(inputs, self.kernel)
        if self.bias is not None:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.units])

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "activation": tf.keras.activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": tf.keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": tf.keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer else None,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class FeatureCross(tf.keras.layers.Layer):
    """One DCN-v2 cross layer: `x0 * (x @ kernel + bias) + x`.

    Called on `[x0, x]` (the stack's input and the previous cross's output) or on `x0` alone. Stacking
    L of them models feature interactions up to degree L+1 explicitly, which an MLP learns slowly.
    """

    def __init__(self, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = tf.keras.initializers.get(kernel_initializer)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)
        self.kernel_regularizer = tf.keras.regularizers.get(kernel_regularizer)

    @staticmethod
    def _split(inputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 2:
                raise ValueError(f"FeatureCross takes x0 or [x0, x], got {len(inputs)} inputs.")
            return inputs[0], inputs[1]
        return inputs, inputs

    def build(self, input_shape):
        x0_shape, x_shape = self._split(input_shape)
        x0_shape, x_shape = tf.TensorShape(x0_shape), tf.TensorShape(x_shape)
        if x0_shape[-1] is None or x0_shape[-1] != x_shape[-1]:
            raise ValueError(f"{self.name}: x0 and x need the same known last dimension, "
                             f"got {x0_shape} and {x_shape}.")
        dim = x0_shape[-1]
        self.kernel = self.add_weight(name="kernel", shape=(dim, dim),
                                      initializer=self.kernel_initializer,
                                      regularizer=self.kernel_regularizer, trainable=True)
        self.bias = self.add_weight(name="bias", shape=(dim,), initializer=self.bias_initializer,
                                    trainable=True)
        super().build(input_shape)

    def call(self, inputs):
        x0, x = self._split(inputs)
        return x0 * tf.nn.bias_add(tf.matmul(x, self.kernel), self.bias) + x

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(self._split(input_shape)[0])

    def get_config(self):
        return {
            **super().get_config(),
            "kernel_initializer": tf.keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer),
            "kernel_regularizer": tf.keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer else None,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class SharedEmbedding(tf.keras.layers.Layer):
    """An embedding table meant to be called on several inputs that hold the same kind of id.

    Pickup and dropoff grid cells, origin and destination airports: sharing one table means an id
    learns from every column it appears in, and the model has one table instead of several.
    """

    def __init__(self, num_ids: int, embedding_dim: int,
                 embeddings_initializer="uniform", embeddings_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.num_ids = _positive_int("num_ids", num_ids)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.embeddings_initializer = tf.keras.initializers.get(embeddings_initializer)
        self.embeddings_regularizer = tf.keras.regularizers.get(embeddings_regularizer)

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.num_ids, self.embedding_dim),
            initializer=self.embeddings_initializer, regularizer=self.embeddings_regularizer,
            trainable=True)
        super().build(input_shape)

    def call(self, ids):
        return tf.nn.embedding_lookup(self.embeddings, tf.cast(ids, tf.int32))

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape).concatenate([self.embedding_dim])

    def get_config(self):
        return {
            **super().get_config(),
            "num_ids": self.num_ids,
            "embedding_dim": self.embedding_dim,
            "embeddings_initializer": tf.keras.initializers.serialize(self.embeddings_initializer),
            "embeddings_regularizer": tf.keras.regularizers.serialize(self.embeddings_regularizer)
            if self.embeddings_regularizer else None,
        }


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class Rescale(tf.keras.layers.Layer):
    """`inputs * scale + offset` with constants fixed when the model is built (no weights).

    A regression head learns a standardized target and answers in the label's units: scale and
    offset are the training label's standard deviation and mean.
    """

    def __init__(self, scale: float = 1.0, offset: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"`scale` must be a positive number, got {scale!r}.")
        self.scale = float(scale)
        self.offset = float(offset)

    def call(self, inputs):
        return inputs * self.scale + self.offset

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset}


@tf.keras.utils.register_keras_serializable(package=_PACKAGE)
class TextModuleEmbedding(tf.keras.layers.Layer):
    """A TF Hub-format text-embedding module as a frozen layer: [batch] strings -> [batch, d] floats.

    The module is a TF2 SavedModel following TF Hub's Reusable SavedModel API (`__call__` on a batch of
    strings, `variables`), loaded with `tf.saved_model.load` from a path or any URI TensorFlow's file
    systems read. Its variables become this layer's (non-trainable) weights and the loaded object is
    tracked by the layer, so saving the model saves the module's functions, variables and assets
    inside it: the saved model answers without `module`'s directory.
    """

    def __init__(self, module: str, **kwargs):
        kwargs["trainable"] = False  # a pretrained encoder, used as it is (TF Hub's default too)
        super().__init__(**kwargs)
        if not isinstance(module, str) or not module:
            raise ValueError(f"`module` must be a path to a TF Hub-format SavedModel, got {module!r}.")
        self.module = module
        self.loaded = tf.saved_model.load(module)
        if not callable(self.loaded):
            raise ValueError(f"{module} is a SavedModel without `__call__`: not a TF2 TF Hub module "
                             "(a TF1 Hub-format module needs converting to TF2 first).")
        # Tracked as weights (frozen by `trainable=False`): in model.weights, checkpoints, exports.
        self.module_weights = list(getattr(self.loaded, "variables", []))

    def call(self, texts):
        outputs = self.loaded(tf.reshape(texts, [-1]))
        if isinstance(outputs, dict):
            raise ValueError(f"{self.module} returns a dict {sorted(outputs)}; a text embedding "
                             "returns one [batch, d] tensor.")
        if outputs.shape.rank != 2 or outputs.shape[-1] is None:
            raise ValueError(f"{self.module} returns shape {outputs.shape}; a text embedding "
                             "returns [batch, d] with a known d.")
        return tf.cast(outputs, tf.float32)

    def get_config(self):
        return {**super().get_config(), "module": self.module}
