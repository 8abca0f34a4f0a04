"""Built-in training recipes: each builds its model, trains it, and reports what it measured."""
