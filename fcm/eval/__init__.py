"""Evaluation of coded features: rate–accuracy metrics such as Bjøntegaard deltas."""
