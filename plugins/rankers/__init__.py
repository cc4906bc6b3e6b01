"""Built-in rankers: filters (``topk``, ``exclude-seen``), ``diversity``, ``freshness`` and
``popularity-fallback``.

Each module registers its rankers through the public ``register_rankers`` hook and builds on
the public helpers of :mod:`recengine.ranking`, exactly as a third-party plugin would. A ranker
takes a request's scored candidates and returns :class:`~recengine.components.Candidates`
(its input itself when it changes nothing): it never mutates its input, and it adds a reason
by building a new list (``reasons[i] + ["popular"]``), never by appending in place, because
candidate lists may share their reason lists.
"""
