"""Training, evaluation, retraining and the model card: never imported by serving code."""
