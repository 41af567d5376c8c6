"""Other systems' specs read into ours (Azure ML components and pipelines), and written back."""
