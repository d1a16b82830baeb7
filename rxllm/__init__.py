"""rxllm: every LLM provider's stream as a ReactiveX Observable of OpenAI-style chunks."""

from __future__ import annotations

__version__ = "0.1.0"
