"""The benchmark suite: ``python -m bench`` (or ``make bench``) measures backup cost, the
impact of a backup on the live app, status polling, the scheduler and page weight.

Every figure that has a target is either a ratio against a baseline measured in the same
run or an absolute budget from the design brief; results go to ``bench/results/latest.json``.
"""
