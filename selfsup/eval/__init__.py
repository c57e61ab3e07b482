"""Evaluation of frozen encoders: feature extraction, weighted k-NN and linear probe.

Typical use::

    features, labels = extract_features(encoder, train_batches, transform, device)
    test_features, test_labels = extract_features(encoder, test_batches, transform, device)
    knn = knn_accuracy(features, labels, test_features, test_labels, num_classes)
    probe = linear_probe(features, labels, test_features, test_labels, num_classes)
"""

from selfsup.eval.features import extract_features
from selfsup.eval.knn import knn_accuracy, knn_predict
from selfsup.eval.linear import LinearProbeResult, linear_probe

__all__ = [
    "LinearProbeResult",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
]
