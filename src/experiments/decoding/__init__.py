"""How SQL is decoded from the model: batched generation (and, on top of it, what constrains and guides it)."""
