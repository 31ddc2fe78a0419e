"""The closed loop on 127.0.0.1: traffic -> feedback -> join -> off-policy learning -> OPE gate -> swap.

``world`` (the replayed matrix and its encoder), ``servers`` (replay backends + router), ``driver``
(the traffic), ``oracle_feedback`` (the judge's stand-in), ``truth`` (true values from the matrix),
``rounds`` (:func:`~router_rl.loop.rounds.run_loop`), ``report`` (Markdown, JSON, PNG). See docs/loop.md.
"""
