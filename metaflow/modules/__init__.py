"""Built-in metaflow modules: one file per module, each with ``run(ctx, data) -> Outcome``."""
