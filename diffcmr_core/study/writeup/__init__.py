"""What the study writes for people: figures, the report, the README's generated blocks."""
