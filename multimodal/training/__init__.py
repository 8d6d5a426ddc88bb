"""Fine-tuning: contrastive training with hard-negative mining (``multimodal train``)."""
