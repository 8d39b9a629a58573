"""Safety: adverse events, grading, DLT adjudication, expedited reporting, the stopping rule."""
