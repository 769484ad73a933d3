"""``python -m course_lib.report``: the README's results table, generated from the committed results files."""

import json

from course_lib.report.tables import readme_results, results_files

print(readme_results())
print(json.dumps(results_files()))
