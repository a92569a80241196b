"""What a run of the study is: the profiles, the run layout, the tables' names and the paper's
published numbers.
"""
