"""catbuilder plugin: Keras (tf-keras) classifiers and embedders.

Importing this package does not import TensorFlow; the estimator module does.
"""

__version__ = "0.1.0"
