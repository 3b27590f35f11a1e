"""catbuilder plugin: statmorph features and scikit-learn classifiers."""

__version__ = "0.1.0"
