"""Online learning-from-users: impressions, attribution, experiments and their statistics."""
