"""QE quality judge: score generated tests, flaky-test classifications and coverage-gap reports.

The judge runs generated pytest files against the code under test in an isolated subprocess
(:mod:`router_rl.judge.sandbox`), measures line/branch coverage (:mod:`router_rl.judge.coverage_report`)
and a mutation score (:mod:`router_rl.judge.mutants`, :mod:`router_rl.judge.mutation`), checks the
test file statically (:mod:`router_rl.judge.checks`) and combines it all into one documented score
in ``[0, 1]`` (:mod:`router_rl.judge.score`, weights in :mod:`router_rl.judge.config`).

Nothing is imported here, so ``import router_rl.judge`` stays cheap; import the submodules.
The entry points are :func:`router_rl.judge.tests_judge.judge_tests`,
:func:`router_rl.judge.flaky.judge_flaky`, :func:`router_rl.judge.gaps.judge_gaps` and
:func:`router_rl.judge.feedback.post_judgement`.
"""
