"""catbuilder plugin: Keras (tf-keras) classifiers and embedders.

Importing this package does not import TensorFlow; the estimator module does.
"""

__version__ = "0.1.0"

#: packaged defaults, merged into catbuilder's configuration (entry point
#: ``catbuilder.config``); read without importing TensorFlow
CONFIG = __file__.replace("__init__.py", "catbuilder-keras.yaml")
