"""Hyper-parameter search on Ray Tune for the LightGBM meta-model and the PPO refinement.

``space`` (search spaces, trials and their seeds, drawn before Ray runs), ``runner`` (the Ray
Tune driver: ASHA early stopping, results), ``lgbm`` / ``ppo`` (the trainables and their
validation metrics), ``best`` (the tuned-config file the trainers read). Ray is imported inside
the functions; see docs/tune.md.
"""
