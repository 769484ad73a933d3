"""Command-line entry points (argparse) of ``python -m course_lib``; the library modules stay free of option parsing."""
