"""What the committed results files say, as tables (:mod:`~course_lib.report.tables`, the README's
results table among them: ``python -m course_lib.report`` prints it) and figures (:mod:`~course_lib.report.figures`)."""
