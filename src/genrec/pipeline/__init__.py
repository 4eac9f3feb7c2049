"""Multi-stage pipeline: candidate recall from several channels (``recall``), then ranking."""
