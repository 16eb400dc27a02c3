"""The study's answer: statistics of stored predictions (more of the report comes in its own modules)."""
