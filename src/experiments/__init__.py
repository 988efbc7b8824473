"""Config-driven LoRA fine-tuning of causal LMs on Text-to-SQL (WikiSQL), scored by executing the SQL."""

__version__ = "0.1.0"
