"""Training programs for maskwatch's models."""
