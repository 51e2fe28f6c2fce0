"""The Gradio web UI, mounted by the server at /."""
