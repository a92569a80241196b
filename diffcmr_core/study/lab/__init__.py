"""Where the notebooks meet the package: the runner that executes them, their first cell, the
explorer widget.
"""
