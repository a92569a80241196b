"""What a run keeps and reads back: step caches under one key rule, chunks split over ranks, the
validation slices.
"""
