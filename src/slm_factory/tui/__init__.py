"""Terminal screens (Textual, the `tui` extra): review.py, the review of QA pairs. Textual is
imported only by the modules here, so the rest of slm-factory runs without it."""
