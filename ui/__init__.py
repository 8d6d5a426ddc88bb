"""The Gradio search page (built on the multimodal library and the indexer)."""
